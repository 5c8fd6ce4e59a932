"""The architecture graph of a spec: a ``networkx.DiGraph``, saved as GraphML / JSON / PNG.

One node per conv/linear layer (node id = layer id) plus an ``input`` and an ``output``
node. Edges follow the data: ``kind="data"`` along the main path, ``kind="shortcut"``
for a residual block's side path (with ``projection`` True when it runs through a 1x1
projection conv). Nodes carry the layer's resolved shape, its parameter and MAC counts
and, when a support is given, how many of its filters are selected.

The graph is built from :func:`grownet.spec.resolve` only, so it knows nothing of
training; ``support`` is plain data (ratios or boolean masks) or any object with a
``ratios()`` method such as the support tracker.

The package is split by concept: :mod:`~grownet.graph.build` makes the graph
(:func:`arch_graph`), :mod:`~grownet.graph.files` writes it (:func:`save_graph`) and
:mod:`~grownet.graph.draw` draws it (:func:`draw_graph`); import the names from here.

See ``docs/graph.md`` for the attribute list and the file formats.
"""

from grownet.graph.build import INPUT, OUTPUT, arch_graph
from grownet.graph.draw import draw_graph
from grownet.graph.files import GRAPHML_NAME, JSON_NAME, save_graph

__all__ = ["GRAPHML_NAME", "INPUT", "JSON_NAME", "OUTPUT", "arch_graph", "draw_graph",
           "save_graph"]
