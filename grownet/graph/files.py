"""Writing the architecture graph to disk: :func:`save_graph` (GraphML and node-link JSON)."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from grownet.atomic import atomic_write

if TYPE_CHECKING:
    import networkx as nx

GRAPHML_NAME = "graph.graphml"
JSON_NAME = "graph.json"

__all__ = ["GRAPHML_NAME", "JSON_NAME", "save_graph"]


def _node_link_kwargs() -> dict[str, str]:
    import networkx as nx

    # networkx >= 3.4 takes edges=..., and warns until 3.6 that its default changes
    # from "links"; older versions only know link=... (default "links").
    params = inspect.signature(nx.node_link_data).parameters
    return {"edges": "edges"} if "edges" in params else {}


def save_graph(graph: nx.DiGraph, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``graph.graphml`` and ``graph.json`` into ``directory`` (created if missing).

    Each file is written atomically (temp file in the same directory, then rename).

    Both files hold the graph as it is: :func:`arch_graph` puts only str, int, float
    and bool values on it, which GraphML stores with their types, so
    ``networkx.read_graphml`` gives back the same nodes, edges and attributes. The JSON
    file is ``networkx.node_link_data`` (edges under ``"edges"``) and reads back with
    ``networkx.node_link_graph(json.load(f), edges="edges")``.

    Parameters
    ----------
    graph
        A graph from :func:`arch_graph` (or any graph whose attribute values are str,
        int, float or bool; ``networkx`` refuses others).
    directory
        Where to write.

    Returns
    -------
    dict[str, Path]
        ``{"graphml": path, "json": path}``.
    """
    import networkx as nx  # here: importing grownet does not need networkx

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"graphml": directory / GRAPHML_NAME, "json": directory / JSON_NAME}
    atomic_write(paths["graphml"], lambda fh: nx.write_graphml(graph, fh))
    data = nx.node_link_data(graph, **_node_link_kwargs())
    text = json.dumps(data, indent=1) + "\n"
    atomic_write(paths["json"], lambda fh: fh.write(text.encode("utf-8")))
    return paths

