"""DessiLBI vs torch.optim.SGD(momentum=0.9): optimizer-call and full-step time on CPU.

Run from the repository root::

    python bench/optim_step.py            # --steps 60 --warmup 10 --threads 2

For three small models (LeNet-5-like CNN, a VGG-like CNN with BatchNorm, an MLP) it
trains identical copies side by side, one iteration of each optimizer in turn
(order alternating), and prints medians over the timed iterations of

* ``opt``:  the ``optimizer.step()`` call alone,
* ``full``: zero_grad + forward + backward + step,

for SGD, DessiLBI, and DessiLBI with a :class:`grownet.path.SupportTracker` hooked in,
plus per-iteration paired ratios against SGD (median of the ratios). Not run by CI.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from grownet.optim import DessiLBI, lbi_param_groups
from grownet.path import SupportTracker


def lenet5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def small_vgg() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        *block(64, 128), *block(128, 128), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(128 * 4 * 4, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )  # fmt: skip


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "lenet5  b128 1x28x28": (lenet5, (128, 1, 28, 28)),
    "vgg-bn  b64  3x32x32": (small_vgg, (64, 3, 32, 32)),
    "mlp     b256 784": (mlp, (256, 1, 28, 28)),
}


def bench_model(
    make: Callable[[], nn.Module], shape: tuple[int, ...], steps: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    torch.manual_seed(0)
    base = make()
    x = torch.randn(*shape)
    y = torch.randint(0, 10, (shape[0],))
    lr = 0.05
    runs: dict[str, tuple[nn.Module, torch.optim.Optimizer]] = {}
    m = copy.deepcopy(base)
    runs["sgd"] = (m, torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9))
    m = copy.deepcopy(base)
    runs["lbi"] = (m, DessiLBI(lbi_param_groups(m), lr=lr, nu=100.0))
    m = copy.deepcopy(base)
    opt = DessiLBI(lbi_param_groups(m), lr=lr, nu=100.0)
    runs["lbi+tracker"] = (m, opt)
    tracker = SupportTracker(opt)
    times: dict[str, dict[str, list[float]]] = {k: {"opt": [], "full": []} for k in runs}
    names = list(runs)
    for it in range(warmup + steps):
        order = names if it % 2 == 0 else names[::-1]
        for name in order:
            model, opt = runs[name]
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
            if it >= warmup:
                times[name]["opt"].append(t2 - t1)
                times[name]["full"].append(t2 - t0)
    tracker.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="timed iterations per model")
    ap.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.steps} timed steps after {args.warmup} warm-up; times are medians in ms")
    head = (f"{'model':22s} {'SGD opt':>8s} {'LBI opt':>8s} {'+trk':>8s} {'ratio':>6s} "
            f"{'+trk':>6s} | {'SGD full':>8s} {'LBI full':>8s} {'+trk':>8s} {'ratio':>6s} "
            f"{'+trk':>6s}")
    print(head)
    print("-" * len(head))
    for label, (make, shape) in MODELS.items():
        t = bench_model(make, shape, args.steps, args.warmup)
        row = [label.ljust(22)]
        for kind in ("opt", "full"):
            med = {k: statistics.median(v[kind]) * 1e3 for k, v in t.items()}
            ratio = {
                k: statistics.median(a / b for a, b in zip(t[k][kind], t["sgd"][kind]))
                for k in ("lbi", "lbi+tracker")
            }
            row.append(f"{med['sgd']:8.3f} {med['lbi']:8.3f} {med['lbi+tracker']:8.3f} "
                       f"{ratio['lbi']:6.2f} {ratio['lbi+tracker']:6.2f}")
        print(" ".join(row[:2]) + " | " + row[2])


if __name__ == "__main__":
    main()
