"""How long the ``grownet`` command takes to start, next to ``import torch``.

Run from the repository root::

    python bench/startup.py            # 11 rounds
    python bench/startup.py --rounds 21

Each round runs, one after the other, ``python -c "import torch"``, ``grownet count
lenet5 --in-shape 1,28,28`` and ``grownet --help`` as child processes (this tree first
on ``PYTHONPATH``), so all three see the same machine load. Printed per command: the
median wall time and the median CPU time (user + sys of the child; steadier than the
wall clock on a shared machine), and the difference to ``import torch``. Goal: ``count``
within 0.5 s of ``import torch``. Not run by CI.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "grownet count": [sys.executable, "-m", "grownet", "count", "lenet5", "--in-shape",
                      "1,28,28"],
    "grownet --help": [sys.executable, "-m", "grownet", "--help"],
}


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            times[name].append(_run(cmd, env))
    medians = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
               for name, t in times.items()}
    base_wall, base_cpu = medians["import torch"]
    print(f"{args.rounds} rounds; medians")
    print(f"{'command':16s} {'wall s':>7s} {'cpu s':>7s} {'wall - torch':>13s} "
          f"{'cpu - torch':>12s}")
    for name, (wall, cpu) in medians.items():
        print(f"{name:16s} {wall:7.3f} {cpu:7.3f} {wall - base_wall:13.3f} "
              f"{cpu - base_cpu:12.3f}")


if __name__ == "__main__":
    main()
