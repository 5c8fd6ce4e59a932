"""``grownet compare RUN... --backbones ...``: cost and accuracy against fixed backbones."""

from __future__ import annotations

import argparse
import shlex

_EPILOG = """\
examples:
  grownet compare runs/grow-a runs/grow-b --backbones lenet5,mlp-300-100
  grownet compare runs/grow-a --backbones lenet5,resnet20 --methods sgd,dessilbi --seeds 3
  grownet compare runs/grow-a --backbones lenet5 --latency onnxruntime   # deployed latency

Writes compare.csv, compare.md and pareto.png to --out (default RUN/compare/); the
backbone runs go to OUT/backbones/<arch>-<method>-seed<S>/. Finished runs with the
same configuration are reused, and a killed compare resumes its unfinished ones, so
running the same command again trains nothing new.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="cost and accuracy against fixed backbones",
        description="Train fixed backbones on the same data split and epoch budget as the "
        "given runs (reusing finished runs), then tabulate params, MACs, latency, training "
        "compute and accuracy (mean ± std over seeds), and draw accuracy against MACs.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="finished run directories to "
                   "compare (grow runs, e.g. one per seed; train runs too); they must share "
                   "data, data_root and augment")
    p.add_argument("--backbones", required=True, metavar="A,B,...", help="presets to train "
                   "as fixed backbones, comma-separated (e.g. lenet5,vgg11,resnet20; see "
                   "'grownet count --help')")
    p.add_argument("--methods", default="sgd", metavar="M,...", help="training methods of "
                   "the backbones: sgd (default), dessilbi, dst, comma-separated")
    p.add_argument("--epochs", type=int, default=None, help="backbone epochs (default: the "
                   "most epochs a given run trained)")
    p.add_argument("--seeds", type=int, default=None, metavar="K", help="train K seeds from "
                   "the smallest given seed (default: the given runs' seeds)")
    p.add_argument("--out", metavar="DIR", default=None, help="results folder (default: "
                   "<first RUN>/compare)")
    p.add_argument("--device", default=None, help="where backbones train: auto, cpu, cuda "
                   "(default: the first run's device)")
    p.add_argument("--latency-repeats", type=int, default=20, metavar="R",
                   help="timed forward passes per latency measurement (default 20)")
    p.add_argument("--latency", choices=("torch", "onnxruntime"), default="torch",
                   help="torch (default): eager PyTorch latency; onnxruntime: also each "
                   "net exported to ONNX under onnxruntime on the CPU (pip install "
                   "'grownet[export]')")
    p.add_argument("--verbose", action="store_true", help="show the backbones' per-epoch "
                   "output")
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The command that produced the results, for ``compare.md``."""
    words = ["grownet", "compare", *args.runs, "--backbones", args.backbones]
    if args.methods != "sgd":
        words += ["--methods", args.methods]
    for flag, value in (("--epochs", args.epochs), ("--seeds", args.seeds),
                        ("--out", args.out), ("--device", args.device)):
        if value is not None:
            words += [flag, str(value)]
    if args.latency_repeats != 20:
        words += ["--latency-repeats", str(args.latency_repeats)]
    if args.latency != "torch":
        words += ["--latency", args.latency]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from grownet.compare import compare

    result = compare(args.runs, args.backbones, args.methods, epochs=args.epochs,
                     seeds=args.seeds, out=args.out, device=args.device,
                     latency_repeats=args.latency_repeats, verbose=args.verbose,
                     command=command_line(args), latency=args.latency)
    print()
    print(result.markdown, end="")
    print(f"\nwrote {', '.join(str(p) for p in result.files.values())}", flush=True)
    return 0
