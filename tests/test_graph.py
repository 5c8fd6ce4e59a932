"""grownet.graph: the architecture graph, its files and its figure."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from grownet.graph import INPUT, OUTPUT, arch_graph, draw_graph, save_graph
from grownet.nets import build
from grownet.spec import PRESETS, ArchSpec, preset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def resnet20() -> ArchSpec:
    return preset("resnet20", in_shape=(3, 32, 32))


@pytest.fixture(scope="module")
def resnet20_b(resnet20: ArchSpec) -> ArchSpec:
    # Widths 16/32/64 differ between stages: option B puts a 1x1 projection on the
    # first block of stages 2 and 3.
    return resnet20.replace(shortcut="B")


def _layer_attrs(shape) -> dict:
    attrs = {
        "kind": shape.kind, "role": shape.role, "stage": shape.stage, "block": shape.block,
        "in_channels": shape.in_channels, "in_features": shape.in_ch,
        "out_channels": shape.out_ch, "kernel": shape.kernel, "stride": shape.stride,
        "padding": shape.padding, "in_h": shape.in_hw[0], "in_w": shape.in_hw[1],
        "out_h": shape.out_hw[0], "out_w": shape.out_hw[1], "bn": shape.bn,
        "bias": shape.bias,
    }
    # An attribute without a value (a linear layer's stage) is absent, never None.
    return {k: v for k, v in attrs.items() if v is not None}


def _input_shape(name: str) -> tuple[int, int, int]:
    """The input each preset is made for: CIFAR for VGG/ResNet, MNIST for the rest."""
    return (3, 32, 32) if name.startswith(("vgg", "resnet")) else (1, 28, 28)


PRIMITIVES = (str, int, float, bool)


def _attribute_values(g: nx.DiGraph) -> list:
    return [*g.graph.values(), *(v for _, d in g.nodes(data=True) for v in d.values()),
            *(v for _, _, d in g.edges(data=True) for v in d.values())]


# ------------------------------------------------------------------------ structure
@pytest.mark.parametrize("name", PRESETS)
def test_graph_structure_and_totals(name: str) -> None:
    spec = preset(name)
    shapes = spec.shapes()
    g = arch_graph(spec)

    assert g.number_of_nodes() == len(shapes) + 2
    assert list(g.nodes) == [INPUT, *[s.id for s in shapes], OUTPUT]
    assert nx.is_directed_acyclic_graph(g)
    assert g.in_degree(INPUT) == 0 and g.out_degree(OUTPUT) == 0
    assert nx.descendants(g, INPUT) == set(g.nodes) - {INPUT}
    assert nx.ancestors(g, OUTPUT) == set(g.nodes) - {OUTPUT}
    # The data edges alone are one chain through every layer but the projections.
    data = g.edge_subgraph((u, v) for u, v, k in g.edges(data="kind") if k == "data")
    main = [s.id for s in shapes if s.role != "proj"]
    assert list(nx.topological_sort(data)) == [INPUT, *main, OUTPUT]
    assert data.number_of_edges() == len(main) + 1

    for i, s in enumerate(shapes):
        node = g.nodes[s.id]
        assert {k: node[k] for k in _layer_attrs(s)} == _layer_attrs(s)
        assert ("stage" in node) == (s.stage is not None)
        assert ("block" in node) == (s.block is not None)
        assert node["order"] == i
        assert "ratio" not in node and "selected" not in node
    assert all(type(v) in PRIMITIVES for v in _attribute_values(g))

    model = build(spec)
    assert g.graph["params"] == sum(p.numel() for p in model.parameters())
    assert g.graph["params"] == sum(p for _, p in g.nodes(data="params"))
    assert g.graph["macs"] == sum(m for _, m in g.nodes(data="macs"))
    assert g.graph["family"] == spec.family and g.graph["name"] == spec.name
    in_shape = (g.graph["in_channels"], g.graph["in_height"], g.graph["in_width"])
    assert in_shape == (1, 28, 28) and g.graph["num_classes"] == 10
    assert "in_shape" not in g.graph


def test_per_layer_params_and_macs_match_torch(resnet20_b: ArchSpec) -> None:
    model = build(resnet20_b).eval()
    g = arch_graph(resnet20_b)
    for s in resnet20_b.shapes():
        own = [p for n, p in model.named_parameters() if n.split(".")[0] in (s.id, f"{s.id}_bn")]
        assert g.nodes[s.id]["params"] == sum(p.numel() for p in own), s.id
    # MACs from the shapes torch actually produces: one weight row per output element.
    macs: dict[str, int] = {}

    def hook(name: str):
        def record(module, inputs, output) -> None:
            macs[name] = output.numel() * module.weight[0].numel()
        return record

    for s in resnet20_b.shapes():
        getattr(model, s.id).register_forward_hook(hook(s.id))
    with torch.no_grad():
        model(torch.zeros(1, *resnet20_b.in_shape))
    assert macs == {n: m for n, m in g.nodes(data="macs") if n not in (INPUT, OUTPUT)}


def test_resnet20_has_one_shortcut_per_block(resnet20: ArchSpec) -> None:
    g = arch_graph(resnet20)
    shortcuts = [(u, v, d) for u, v, d in g.edges(data=True) if d["kind"] == "shortcut"]
    assert len(shortcuts) == 9
    conv2 = {s.id: s for s in resnet20.shapes() if s.role == "conv2"}
    assert {v for _, v, _ in shortcuts} == set(conv2)
    for u, v, d in shortcuts:
        assert u == conv2[v].shortcut_from
        assert d["projection"] is False
    assert all("projection" not in d for _, _, d in g.edges(data=True) if d["kind"] == "data")


def test_option_b_shortcuts_run_through_projection(resnet20_b: ArchSpec) -> None:
    g = arch_graph(resnet20_b)
    shapes = {s.id: s for s in resnet20_b.shapes()}
    projs = [s for s in shapes.values() if s.role == "proj"]
    assert [p.id for p in projs] == ["s2_b0_proj", "s3_b0_proj"]
    into_conv2 = [(u, v, d) for u, v, d in g.edges(data=True)
                  if d["kind"] == "shortcut" and shapes[v].role == "conv2"]
    assert len(into_conv2) == 9
    for u, v, d in into_conv2:
        s = shapes[v]
        if s.proj is None:
            assert (u, d["projection"]) == (s.shortcut_from, False)
        else:
            assert (u, d["projection"]) == (s.proj, True)
            # ...and the projection reads the block input on the shortcut path too.
            assert list(g.predecessors(s.proj)) == [s.shortcut_from]
            assert g.edges[s.shortcut_from, s.proj] == {"kind": "shortcut",
                                                        "projection": True}
    assert g.nodes["s2_b0_proj"]["kernel"] == 1 and g.nodes["s2_b0_proj"]["stride"] == 2


# ------------------------------------------------------------------------ support
def test_support_as_ratios(resnet20: ArchSpec) -> None:
    g = arch_graph(resnet20, support={"stem": 0.25, "s2_b0_conv1": 1, "head": 0.0})
    assert g.nodes["stem"]["ratio"] == 0.25 and isinstance(g.nodes["stem"]["ratio"], float)
    assert g.nodes["s2_b0_conv1"]["ratio"] == 1.0
    assert g.nodes["head"]["ratio"] == 0.0
    # A ratio alone does not say how many filters: no "selected".
    assert all("selected" not in d for _, d in g.nodes(data=True))
    assert "ratio" not in g.nodes["s1_b0_conv1"]


def test_support_as_masks(resnet20: ArchSpec) -> None:
    mask = torch.zeros(16, dtype=torch.bool)
    mask[:5] = True
    np_mask = np.arange(32) % 4 == 0
    g = arch_graph(resnet20, support={"stem": mask, "s2_b0_conv1": np_mask,
                                      "s3_b0_conv1": torch.tensor(0.5)})
    assert (g.nodes["stem"]["selected"], g.nodes["stem"]["ratio"]) == (5, 5 / 16)
    assert isinstance(g.nodes["stem"]["selected"], int)
    assert (g.nodes["s2_b0_conv1"]["selected"], g.nodes["s2_b0_conv1"]["ratio"]) == (8, 0.25)
    assert g.nodes["s3_b0_conv1"]["ratio"] == 0.5
    assert "selected" not in g.nodes["s3_b0_conv1"]
    assert "ratio" not in g.nodes["head"]


def test_support_element_masks_and_parameter_names(resnet20: ArchSpec) -> None:
    element = torch.zeros(16, 3, 3, 3, dtype=torch.bool)
    element[:4] = True  # a quarter of the weight's entries
    g = arch_graph(resnet20, support={"stem.weight": element, "head.weight": [True] * 10})
    assert g.nodes["stem"]["ratio"] == 0.25 and "selected" not in g.nodes["stem"]
    assert (g.nodes["head"]["selected"], g.nodes["head"]["ratio"]) == (10, 1.0)


def test_support_from_tracker_like_object(resnet20: ArchSpec) -> None:
    class Tracker:
        def ratios(self) -> dict[str, float]:
            return {"s1_b0_conv1": 0.75}

    g = arch_graph(resnet20, support=Tracker())
    assert g.nodes["s1_b0_conv1"]["ratio"] == 0.75
    assert sum("ratio" in d for _, d in g.nodes(data=True)) == 1


def _partly_selected_tracker():
    """A LeNet-5 (conv filter layers, element-wise hidden FC layers) trained by DessiLBI
    until every coupled layer has some but not all of its entries selected."""
    from torch.nn import functional as F

    import grownet as gn

    torch.manual_seed(0)
    spec = preset("lenet5", in_shape=(1, 12, 12), num_classes=3)
    model = build(spec)
    groups = gn.lbi_param_groups(model, hidden_linear="element")
    for group in groups:  # the lasso layers enter much earlier at the same λ
        group["lam"] = 0.05 if group["structure"] == "element" else 0.5
    opt = gn.DessiLBI(groups, lr=0.1, nu=1.0)
    tracker = gn.SupportTracker(opt)
    x, y = torch.randn(32, 1, 12, 12), torch.randint(0, 3, (32,))
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if all(0.0 < r < 1.0 for r in tracker.ratios().values()):
            return spec, tracker
    raise AssertionError(f"no partial support after 40 steps: {tracker.ratios()}")


def test_support_from_a_tracker_survives_graphml(tmp_path) -> None:
    spec, tracker = _partly_selected_tracker()
    masks = tracker.support()
    assert masks["s1_l0"].shape == (6,) and masks["fc1"].shape == (120, 144)
    g = arch_graph(spec, support=masks)
    for layer in ("s1_l0", "s2_l0"):  # filter layers: a count and its fraction
        mask = masks[layer]
        assert g.nodes[layer]["selected"] == int(mask.sum())
        assert g.nodes[layer]["ratio"] == int(mask.sum()) / mask.numel()
    for layer in ("fc1", "fc2"):  # element layers: the density of the weight's support
        assert g.nodes[layer]["ratio"] == pytest.approx(masks[layer].float().mean().item())
        assert "selected" not in g.nodes[layer]
    assert "ratio" not in g.nodes["head"]  # the plain classifier has no Γ
    # The tracker itself gives the same graph (it is asked for its masks).
    assert list(arch_graph(spec, support=tracker).nodes(data=True)) == list(
        g.nodes(data=True))

    paths = save_graph(g, tmp_path)
    for back in (nx.read_graphml(paths["graphml"]),
                 nx.node_link_graph(json.loads(paths["json"].read_text()), edges="edges")):
        for n, data in g.nodes(data=True):
            assert _typed(back.nodes[n]) == _typed(data), n
        # ...and the figure drawn from the file shows the selection.
        ax = draw_graph(back).axes[0]
        texts = {t.get_text() for t in ax.texts}
        assert f"{g.nodes['s2_l0']['selected']}/16" in texts
        assert "filled part: selected filters" in ax.get_xlabel()
        assert "mean selected" in ax.get_title(loc="left")


@pytest.mark.parametrize("support, error", [
    ({"nope": 0.5}, ValueError),
    ({"stem": torch.ones(15, dtype=torch.bool)}, ValueError),
    ({"stem": np.ones(16)}, ValueError),
    ({"stem": 1.5}, ValueError),
    ({"stem": True}, TypeError),
    ([0.5], TypeError),
])
def test_bad_support_is_refused(resnet20: ArchSpec, support, error) -> None:
    with pytest.raises(error):
        arch_graph(resnet20, support=support)


# ------------------------------------------------------------------------ files
def _graph_attrs(g: nx.DiGraph) -> dict:
    # read_graphml adds the declared defaults to the graph attributes
    return {k: v for k, v in g.graph.items() if k not in ("node_default", "edge_default")}


def _typed(attrs: dict) -> dict:
    # == alone would take True for 1 and 1.0 for 1: compare the types too
    return {k: (type(v), v) for k, v in attrs.items()}


@pytest.mark.parametrize("name", PRESETS)
def test_networkx_writes_every_preset_as_it_is(name: str, tmp_path) -> None:
    spec = preset(name, in_shape=_input_shape(name))
    g = arch_graph(spec)
    assert all(type(v) in PRIMITIVES for v in _attribute_values(g))
    nx.write_graphml(g, tmp_path / "g.graphml")  # networkx's own writer, no conversion
    back = nx.read_graphml(tmp_path / "g.graphml")
    assert list(back.nodes) == list(g.nodes)
    for n, data in g.nodes(data=True):
        assert _typed(back.nodes[n]) == _typed(data), n
    assert set(back.edges) == set(g.edges)
    for u, v, data in g.edges(data=True):
        assert _typed(back.edges[u, v]) == _typed(data), (u, v)
    assert _typed(_graph_attrs(back)) == _typed(g.graph)
    c, h, w = spec.in_shape
    assert (back.graph["in_channels"], back.graph["in_height"], back.graph["in_width"]) \
        == (c, h, w)


def test_graphml_round_trip(resnet20_b: ArchSpec, tmp_path) -> None:
    mask = torch.arange(16) < 12
    g = arch_graph(resnet20_b, support={"stem": mask, "s2_b0_proj": 0.5})
    paths = save_graph(g, tmp_path / "stage")
    assert set(paths) == {"graphml", "json"}
    assert paths["graphml"].name == "graph.graphml" and paths["json"].name == "graph.json"
    assert sorted(p.name for p in paths["graphml"].parent.iterdir()) == [
        "graph.graphml", "graph.json"]  # no temp files left behind

    back = nx.read_graphml(paths["graphml"])
    assert isinstance(back, nx.DiGraph) and not back.is_multigraph()
    assert list(back.nodes) == list(g.nodes)
    assert set(back.edges) == set(g.edges)
    for n, data in g.nodes(data=True):
        assert dict(back.nodes[n]) == data, n
    for u, v, data in g.edges(data=True):
        assert dict(back.edges[u, v]) == data
    assert _graph_attrs(back) == g.graph
    assert back.nodes["stem"]["selected"] == 12 and back.nodes["stem"]["bn"] is True
    assert back.nodes["stem"]["ratio"] == 0.75 and back.nodes["s2_b0_proj"]["ratio"] == 0.5
    assert "selected" not in back.nodes["s2_b0_proj"]  # a ratio alone gives no count
    assert "stage" not in back.nodes["head"] and back.nodes["s1_b0_conv1"]["stage"] == "s1"


def test_node_link_json_round_trip(resnet20_b: ArchSpec, tmp_path) -> None:
    g = arch_graph(resnet20_b, support={"s1_b0_conv1": 0.5})
    paths = save_graph(g, tmp_path)
    back = nx.node_link_graph(json.loads(paths["json"].read_text()), edges="edges")
    assert isinstance(back, nx.DiGraph) and back.is_directed()
    assert list(back.nodes(data=True)) == list(g.nodes(data=True))
    assert list(back.edges(data=True)) == list(g.edges(data=True))
    assert back.graph == g.graph


def test_save_overwrites_in_place(resnet20: ArchSpec, tmp_path) -> None:
    save_graph(arch_graph(resnet20), tmp_path)
    paths = save_graph(arch_graph(preset("lenet5")), tmp_path)
    assert "lenet5" in paths["graphml"].read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.graphml", "graph.json"]


# ------------------------------------------------------------------------ figure
def _assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000


@pytest.mark.parametrize("name", PRESETS)
def test_draw_every_preset(name: str, tmp_path) -> None:
    g = arch_graph(preset(name))
    fig = draw_graph(g, tmp_path / "graph.png", dpi=60)
    assert isinstance(fig, Figure)
    _assert_png(tmp_path / "graph.png")
    # The figure widens with the number of layers (ResNet-110 must stay readable).
    n = g.number_of_nodes() - 2
    assert fig.get_figwidth() >= min(0.15 * n, 30.0)


def test_draw_with_support_and_from_files(resnet20_b: ArchSpec, tmp_path) -> None:
    rng = np.random.default_rng(0)
    support = {i: float(rng.uniform()) for i in resnet20_b.layer_ids()}
    g = arch_graph(resnet20_b, support=support)
    fig = draw_graph(g, tmp_path / "sub" / "support.png", title="custom title")
    _assert_png(tmp_path / "sub" / "support.png")
    assert fig.axes[0].get_title(loc="left") == "custom title"
    # A graph read back from GraphML (same attributes, same types) draws the same way.
    paths = save_graph(g, tmp_path)
    draw_graph(nx.read_graphml(paths["graphml"]), tmp_path / "back.png", dpi=60)
    _assert_png(tmp_path / "back.png")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_draw_without_path_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    fig = draw_graph(arch_graph(preset("lenet5")))
    assert isinstance(fig, Figure) and list(tmp_path.iterdir()) == []
