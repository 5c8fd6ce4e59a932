"""Winning tickets of fixed backbones on mnist5k, λ paced per layer: DessiLBI's support at
epoch 7 (and at the first step where it reaches a size), cut out and retrained from the
initialisation (the lottery procedure), against dense SGD with the same recipe.

    python experiments/tickets_mnist5k.py --seeds 0 1 2 --out runs/exp-tickets

Recipe (the issue's): lr 0.05, 15 epochs, grownet's cosine schedule with one warm-up
epoch, batch 128, PyTorch's default init; retraining: SGD with the same recipe.
Per arch and seed:

* ``sgd``: ``grownet train --method sgd``;
* ``dessilbi``: ``grownet train --method dessilbi --entry-epochs E`` (λ per layer);
* ``ticket-e7``: ``grownet prune RUN --epoch 7 --retrain-epochs 15 --retrain-from init``;
* ``ticket-sizeK``: ``grownet prune RUN --keep K ...`` (the first step at which Γ's
  support reaches a share K of the params; so a little more than K).

``E`` per arch (``ENTRY``) was chosen, on seed 0, so that the support at epoch 7 is at
most the issue's size (30 % of LeNet-5's params, 50 % of vgg16-narrow's): a count of
Γ's support, no accuracy looked at. A ticket that leaves a layer fewer than 2 units is
refused (and reported as such). Writes ``<out>/results.csv`` and ``<out>/results.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, mean_std, train_row  # noqa: E402

RECIPE = {"lr": 0.05, "epochs": 15, "batch_size": 128}
#: entry target (epochs) of λ's per-layer pacing, and the size of the sized ticket
ENTRY = {"lenet5": 6.5, "vgg16-narrow": 7.0}
SIZE = {"lenet5": (0.25, 0.3), "vgg16-narrow": (0.4, 0.5)}
TICKET_EPOCH = 7


def _ticket(source: Path, out: Path, seed: int, **how) -> dict:
    """``grownet prune`` with retraining from init; the retrained run's row, or a row
    saying why it was refused."""
    import contextlib
    import io
    import shutil

    from grownet.errors import UserError
    from grownet.prune import prune_run
    from grownet.runs import RunDir

    if not RunDir(out / "retrain").finished:
        shutil.rmtree(out, ignore_errors=True)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                prune_run(source, out, retrain_epochs=RECIPE["epochs"], retrain_from="init",
                          seed=seed, quiet=True, **how)
        except UserError as err:
            return {"refused": str(err)}
    row = train_row(out / "retrain")
    event = RunDir(out).events()[0]
    row.update(refused="", ticket_step=event.get("ticket_step", ""),
               ticket_epochs_done=event.get("ticket_epochs_done", TICKET_EPOCH + 1))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--archs", nargs="+", default=list(ENTRY))
    ap.add_argument("--out", type=Path, default=Path("runs/exp-tickets"))
    args = ap.parse_args()
    from grownet.cost import count
    from grownet.spec import preset

    rows = []
    for arch in args.archs:
        full = count(preset(arch, (1, 28, 28), 10)).params
        for seed in args.seeds:
            base = {"arch": arch, "seed": seed, **RECIPE}
            runs = {"sgd": train_row(args.out / f"{arch}-sgd-s{seed}", method="sgd", **base)}
            lbi = args.out / f"{arch}-dessilbi-s{seed}"
            runs["dessilbi"] = train_row(lbi, method="dessilbi", entry_epochs=ENTRY[arch],
                                         **base)
            runs[f"ticket-e{TICKET_EPOCH}"] = _ticket(
                lbi, args.out / f"{arch}-ticket-e{TICKET_EPOCH}-s{seed}", seed,
                epoch=TICKET_EPOCH)
            for size in SIZE[arch]:
                runs[f"ticket-size{size:g}"] = _ticket(
                    lbi, args.out / f"{arch}-ticket-size{size:g}-s{seed}", seed, keep=size)
            for case, row in runs.items():
                rows.append({"arch": arch, "case": case, "seed": seed, "full_params": full,
                             **row})
                print(f"{arch} {case} s{seed}: "
                      f"{row.get('refused') or round(row['final_acc'] * 100, 2)}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "results.csv", index=False)
    out = []
    for (arch, case), g in table.groupby(["arch", "case"], sort=False):
        done = g[g["refused"].fillna("") == ""] if "refused" in g else g
        refused = len(g) - len(done)
        if done.empty:
            out.append([arch, case, "refused", "", "", "", f"{refused} of {len(g)}"])
            continue
        kept = done["params"] / done["full_params"]
        epoch = (mean_std(done["ticket_epochs_done"], 1.0, 1)
                 if case.startswith("ticket") else "")
        wall = done["train_s"].sum() / len(done)
        out.append([arch, case, mean_std(done["final_acc"]), mean_std(kept, 100.0, 1),
                    f"{done['params'].mean():,.0f}", epoch,
                    f"{refused} of {len(g)}" if refused else "0", f"{wall:.0f}"])
    text = markdown(["arch", "run", "test acc %", "params kept %", "params",
                     "epochs trained at the ticket", "refused (< 2 units)",
                     "train s / run (1 thread)"], out)
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
