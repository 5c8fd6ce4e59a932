"""``grownet export RUN --format onnx|pt2``: the net as a file deployment tools read."""

from __future__ import annotations

import argparse

from grownet.cost import count, human

_EPILOG = """\
examples:
  grownet export runs/grow-a --format onnx                  # runs/grow-a/export/final.onnx
  grownet export runs/grow-a --format pt2 --stage 1 --out stage1.pt2
  grownet export runs/grow-a --format onnx --opset 18 --out net.onnx --force

The file is checked before it is written: onnxruntime (onnx) or the reloaded program
(pt2) against PyTorch on a batch of the run's test images; max |Δlogits| must be
<= 1e-4. ONNX needs the extra: pip install 'grownet[export]'.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from grownet.deploy import FORMATS

    p = sub.add_parser(
        "export", help="the net as an ONNX file or a torch.export program",
        description="Export a finished run's net (or the net at the end of one of its "
        "stages) with a dynamic batch dimension, check it against PyTorch on the run's "
        "test images, and write it.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="a run directory (grow, train or prune)")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx "
                   "(torch.onnx.export, checked with onnxruntime) or pt2 (torch.export)")
    p.add_argument("--stage", type=int, default=None, metavar="N", help="the net at the end "
                   "of stage N instead of the final one")
    p.add_argument("--out", metavar="FILE", default=None, help="where to write (default "
                   "RUN/export/final.FORMAT, or RUN/export/stage-NNN.FORMAT)")
    p.add_argument("--opset", type=int, default=None, metavar="K", help="ONNX opset "
                   "(default: torch's)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grownet.deploy import TOLERANCE, export_run

    result = export_run(args.run, args.format, stage=args.stage, out=args.out,
                        opset=args.opset, force=args.force)
    which = "final net" if args.stage is None else f"net at the end of stage {args.stage}"
    how = "onnxruntime" if result.format == "onnx" else "reloaded torch.export program"
    opset = f", opset {result.opset}" if result.opset is not None else ""
    print(f"check: {how} vs PyTorch on {result.images} test images of {result.data} "
          f"(batch {result.images} and 1): max |Δlogits| = {result.max_abs_diff:.2e} "
          f"(<= {TOLERANCE:g})")
    print(f"wrote {result.path} ({result.format}{opset}, {human(result.size)}B"
          f"): the {which} of {args.run}, {human(count(result.spec).params)} params",
          flush=True)
    return 0
