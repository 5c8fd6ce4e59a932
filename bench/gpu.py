"""Training throughput with SGD and DessiLBI, one growth check and one surgery, on the
job's own runtime (device-resident data, bf16 autocast and channels_last on CUDA).

Run from the repository root::

    python bench/gpu.py                       # CUDA when present: batch 512, 50 steps
    python bench/gpu.py --device cpu --models vgg16-narrow --batch-size 64 --steps 5

Synthetic CIFAR-shaped data (3x32x32, 10 classes) lives on the device; every step is
zero_grad + forward + backward + optimizer step, timed with CUDA events (or the wall
clock on CPU) after warm-up steps. The two optimizers alternate in blocks on identical
copies of one model, so both see the same clocks and the same thermal state. Printed
per model: images/s with SGD (momentum 0.9, torch's fused kernel where it has one) and
with DessiLBI (+ the support tracker's step hook), their step-time ratio (goal <= 1.05),
the time of one growth check (Γ's support of every layer read in one host sync, and
the policy's decision), and of one surgery (widen every layer by 1.5x, carrying weights
and optimizer state). Not run by CI.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from grownet import surgery
from grownet.dist import DistContext
from grownet.grow import Grower, GrowthPolicy, growable_units
from grownet.nets import build
from grownet.optim import DessiLBI, lbi_param_groups
from grownet.path import SupportTracker
from grownet.spec import preset
from grownet.train.loop import autocast
from grownet.train.runtime import Runtime

IN_SHAPE, CLASSES = (3, 32, 32), 10


class Clock:
    """Elapsed seconds of a block: CUDA events on a GPU (no sync inside), else wall."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> Clock:
        if self.cuda:
            self.start, self.end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.end.record()
        else:
            self.seconds = time.perf_counter() - self.t0

    def elapsed(self) -> float:
        if self.cuda:
            self.end.synchronize()
            return self.start.elapsed_time(self.end) / 1000
        return self.seconds


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def lbi(model: torch.nn.Module) -> torch.optim.Optimizer:
    return DessiLBI(lbi_param_groups(model), lr=0.05, kappa=1.0, nu=100.0, lam=1e-4,
                    momentum=0.9)


def train_steps(net, model, opt, x, y, steps: int, rt: Runtime) -> float:
    """Seconds for ``steps`` training steps on the fixed batch ``(x, y)``."""
    with Clock(rt.device) as clock:
        for _ in range(steps):
            with autocast(rt.device):
                loss = F.cross_entropy(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return clock.elapsed()


def bench_model(name: str, args: argparse.Namespace, rt: Runtime) -> dict[str, float]:
    torch.manual_seed(0)
    spec = preset(name, in_shape=IN_SHAPE, num_classes=CLASSES)
    base = build(spec, init="kaiming")
    x = rt.batch(torch.randn(args.batch_size, *IN_SHAPE, device=rt.device))
    y = torch.randint(0, CLASSES, (args.batch_size,), device=rt.device)
    runs = {}
    for label, make in (("sgd", sgd), ("lbi", lbi)):
        model = rt.place(copy.deepcopy(base))
        opt = make(model)
        tracker = SupportTracker(opt) if label == "lbi" else None
        runs[label] = (rt.net(model), model, opt, tracker)
    for net, model, opt, _ in runs.values():
        train_steps(net, model, opt, x, y, args.warmup, rt)
    times: dict[str, list[float]] = {"sgd": [], "lbi": []}
    block = max(1, args.steps // args.blocks)
    for i in range(args.blocks):  # alternate the order: neither always runs first
        for label in (("sgd", "lbi") if i % 2 == 0 else ("lbi", "sgd")):
            net, model, opt, _ = runs[label]
            times[label].append(train_steps(net, model, opt, x, y, block, rt) / block)
    step = {k: statistics.median(v) for k, v in times.items()}

    _, model, opt, tracker = runs["lbi"]
    # the run's own tracker (its entry history); the check is decide's one sync
    grower = Grower(spec, model, opt, GrowthPolicy(tau=0.5, epochs_per_stage=1),
                    tracker=tracker)
    with Clock(rt.device) as clock:
        decision = grower.decide(0)
    check = clock.elapsed()
    wider = spec
    for unit in growable_units(spec):
        wider = surgery.widen(wider, unit.id, max(unit.width + 1, round(unit.width * 1.5)))
    t0 = time.perf_counter()
    new_model, _ = surgery.transplant(model, wider, old_optimizer=opt,
                                      new_optimizer_factory=lbi)
    rt.place(new_model)
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    surgery_s = time.perf_counter() - t0
    return {"sgd_ips": args.batch_size / step["sgd"], "lbi_ips": args.batch_size / step["lbi"],
            "ratio": step["lbi"] / step["sgd"], "check_ms": check * 1000,
            "surgery_ms": surgery_s * 1000, "decision": decision.kind}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="vgg16-narrow,vgg16,resnet56")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=50, help="timed steps per optimizer")
    p.add_argument("--blocks", type=int, default=5, help="alternating blocks of steps")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rt = Runtime(DistContext(device=device), compile=args.compile)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}, batch {args.batch_size}, "
          f"{args.steps} steps, bf16 autocast: {device.type == 'cuda'}, channels_last: "
          f"{rt.channels_last}, compile: {args.compile}")
    print(f"{'model':<14} {'SGD img/s':>10} {'LBI img/s':>10} {'LBI/SGD':>8} "
          f"{'check ms':>9} {'(decided)':>9} {'surgery ms':>11}")
    for model_name in args.models.split(","):
        r = bench_model(model_name, args, rt)
        print(f"{model_name:<14} {r['sgd_ips']:>10,.0f} {r['lbi_ips']:>10,.0f} "
              f"{r['ratio']:>8.3f} {r['check_ms']:>9.2f} {r['decision']:>9} "
              f"{r['surgery_ms']:>11.1f}",
              flush=True)


if __name__ == "__main__":
    main()
