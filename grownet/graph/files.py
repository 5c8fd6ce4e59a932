"""Writing the architecture graph to disk: :func:`save_graph` (GraphML and node-link JSON).

Also holds the atomic write (temp file, then rename) that :func:`~grownet.graph.draw_graph`
uses for its PNG.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from grownet.atomic import atomic_write

GRAPHML_NAME = "graph.graphml"
JSON_NAME = "graph.json"

__all__ = ["GRAPHML_NAME", "JSON_NAME", "save_graph"]


def _graphml_value(value: Any) -> Any:
    """A GraphML-safe scalar: None -> "", tuple/list -> JSON text, numpy -> Python."""
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def _graphml_ready(graph: nx.DiGraph) -> nx.DiGraph:
    out = nx.DiGraph(**{k: _graphml_value(v) for k, v in graph.graph.items()})
    for node, data in graph.nodes(data=True):
        out.add_node(node, **{k: _graphml_value(v) for k, v in data.items()})
    for u, v, data in graph.edges(data=True):
        out.add_edge(u, v, **{k: _graphml_value(x) for k, x in data.items()})
    return out


def _node_link_kwargs() -> dict[str, str]:
    # networkx >= 3.4 takes edges=..., and warns until 3.6 that its default changes
    # from "links"; older versions only know link=... (default "links").
    params = inspect.signature(nx.node_link_data).parameters
    return {"edges": "edges"} if "edges" in params else {}


def save_graph(graph: nx.DiGraph, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``graph.graphml`` and ``graph.json`` into ``directory`` (created if missing).

    Each file is written atomically (temp file in the same directory, then rename).

    GraphML only stores scalars, so the GraphML copy converts ``None`` to ``""`` (e.g.
    ``stage`` of the stem and the linear layers) and tuples to JSON text (the graph's
    ``in_shape`` becomes ``"[1, 28, 28]"``); ``networkx.read_graphml`` returns those
    strings. The JSON file is ``networkx.node_link_data`` (edges under ``"edges"``);
    it keeps ``None`` as ``null`` and tuples as lists, and reads back with
    ``networkx.node_link_graph(json.load(f), edges="edges")``.

    Parameters
    ----------
    graph
        A graph from :func:`arch_graph`.
    directory
        Where to write.

    Returns
    -------
    dict[str, Path]
        ``{"graphml": path, "json": path}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"graphml": directory / GRAPHML_NAME, "json": directory / JSON_NAME}
    ready = _graphml_ready(graph)
    atomic_write(paths["graphml"], lambda fh: nx.write_graphml(ready, fh))
    data = nx.node_link_data(graph, **_node_link_kwargs())
    text = json.dumps(data, indent=1, default=_json_default) + "\n"
    atomic_write(paths["json"], lambda fh: fh.write(text.encode("utf-8")))
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to graph JSON")
