"""A DST training step with a fixed alpha, with alpha paced to a keep ratio
(``KeepPacer``), and a dense SGD step, side by side on CPU.

Run from the repository root::

    python bench/dst_step.py            # --steps 60 --warmup 10 --threads 1

For LeNet-300-100 and LeNet-5-Caffe at batch 64 (the DST paper's MNIST nets and
batch), identical copies train one step each in turn (order alternating); it prints
the median time of a full step (zero_grad, forward, regulariser, backward, SGD step)
and the paired ratios against dense SGD. Not run by CI.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from grownet import build, dst
from grownet.spec import preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for arch in ("mlp-300-100", "lenet5-caffe"):
        torch.manual_seed(0)
        base = build(preset(arch, (1, 28, 28), 10))
        nets = {"sgd": copy.deepcopy(base), "dst": dst.convert(copy.deepcopy(base)),
                "dst-keep": dst.convert(copy.deepcopy(base))}
        opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
                for k, m in nets.items()}
        total = args.steps + args.warmup
        losses = {"sgd": None, "dst": lambda m: dst.sparsity_loss(m, 5e-4),
                  "dst-keep": dst.KeepPacer(nets["dst-keep"], 0.05, total, lr=0.01)}
        x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
        times: dict[str, list[float]] = {k: [] for k in nets}
        for i in range(total):
            order = list(nets) if i % 2 == 0 else list(reversed(nets))
            for k in order:
                t0 = time.perf_counter()
                loss = F.cross_entropy(nets[k](x), y)
                if losses[k] is not None:
                    loss = loss + losses[k](nets[k])
                opts[k].zero_grad(set_to_none=True)
                loss.backward()
                opts[k].step()
                if i >= args.warmup:
                    times[k].append(time.perf_counter() - t0)
        sgd = times["sgd"]
        cells = []
        for k, ts in times.items():
            ratio = statistics.median(t / s for t, s in zip(ts, sgd))
            cells.append(f"{k} {statistics.median(ts) * 1e3:7.2f} ms ({ratio:4.2f}x sgd)")
        print(f"{arch:13s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
