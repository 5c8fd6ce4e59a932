"""The README's Python example runs as written and grows a too-narrow start."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _synthetic_loader(n: int = 640, batch: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """10 classes of 28x28 images: a fixed random pattern per class plus noise (the
    user's own data, as far as the example knows)."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(10, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x = patterns[y] + 0.8 * torch.randn(n, 1, 28, 28, generator=g)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def test_readme_example_grows_and_keeps_the_tracker_history(capsys):
    torch.manual_seed(0)
    scope = {"train_loader": _synthetic_loader(), "epochs": 8}
    exec(compile(_python_example(), str(README), "exec"), scope)
    grower, track, spec = scope["grower"], scope["track"], scope["spec"]
    start = scope["gn"].ArchSpec.preset("seed", in_shape=(1, 28, 28), num_classes=10)
    assert grower.stage >= 1, "the narrow start must grow within 8 epochs"
    assert spec != start and scope["gn"].count(spec).params > scope["gn"].count(start).params
    # one tracker for the whole run: its history spans every stage, and it reads the
    # grown model's optimizer
    history = track.history()
    assert sorted(set(history["epoch"])) == list(range(8))
    assert track.layers == [n for n in track.layers]  # names of the current layers
    widths = {layer: w for layer, w in spec.widths().items() if layer in track.layers}
    for layer, width in widths.items():
        assert track.entry_epochs(layer).shape[0] == width
    # filters that entered before growth keep their (early) entry epochs
    entered = [int(e) for layer in widths for e in track.entry_epochs(layer) if e >= 0]
    assert entered and min(entered) < grower.stage_start
    assert "total params" in capsys.readouterr().out
    assert scope["graph"].number_of_nodes() == len(spec.shapes()) + 2
