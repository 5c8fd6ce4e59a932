"""``prune_run``: a ticket or a prune-by-order cut of a finished run, slimmed, saved as
its own run directory, optionally retrained (fine-tuning or the lottery procedure)."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from grownet.cost import count, human
from grownet.errors import UserError
from grownet.nets import GrowNet, build
from grownet.prune.order import by_percent
from grownet.prune.sized import MIN_UNITS, few_units, ticket_of_size
from grownet.prune.slimming import Selection, slim_network
from grownet.prune.tickets import check_layers, ticket
from grownet.runs import RunConfig, RunDir, atomic_write_text, load_final_model
from grownet.spec import ArchSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PruneResult", "prune_run", "prune_table"]

RETRAIN_FROM = ("current", "init")


@dataclass
class PruneResult:
    """What :func:`prune_run` made.

    Attributes
    ----------
    out
        The new run directory.
    spec, model
        The slimmed architecture and network (before retraining).
    keep
        The kept filters per layer of the source's final spec.
    table
        ``prune.csv`` as a DataFrame.
    acc_full, acc_before, acc_after
        Test accuracy of the source's final network, of the slimmed one without
        retraining, and after retraining (``None`` without retraining).
    """

    out: Path
    spec: ArchSpec
    model: GrowNet
    keep: Selection
    table: pd.DataFrame
    acc_full: float
    acc_before: float
    acc_after: float | None = None


def prune_table(old: ArchSpec, new: ArchSpec, keep: Selection) -> pd.DataFrame:
    """One row per layer of ``old``: widths, kept %, params and MACs before and after,
    the note of :class:`Selection` and the kept indices (space-separated)."""
    import pandas as pd

    before, after = count(old), count(new)
    rows = []
    for s in old.shapes():
        a, b = before[s.id], after[s.id]
        kept = keep.get(s.id)
        idx = range(s.out_ch) if kept is None else kept.tolist()
        note = keep.notes.get(s.id, "classifier: keeps all" if s.role == "head" else "")
        rows.append({
            "layer": s.id, "width_before": s.out_ch, "width_after": b.out_ch,
            "kept_pct": round(100.0 * b.out_ch / s.out_ch, 2),
            "params_before": a.params, "params_after": b.params,
            "macs_before": a.macs, "macs_after": b.macs, "note": note,
            "kept": " ".join(str(int(i)) for i in idx)})
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    """The before/after table as aligned text with a totals line."""
    head = ("layer", "width", "kept%", "params", "MACs", "note")
    rows = [head]
    for r in table.itertuples():
        rows.append((r.layer, f"{r.width_before} -> {r.width_after}", f"{r.kept_pct:.1f}",
                     f"{r.params_before:,} -> {r.params_after:,}",
                     f"{r.macs_before:,} -> {r.macs_after:,}", r.note))
    pb, pa = int(table.params_before.sum()), int(table.params_after.sum())
    mb, ma = int(table.macs_before.sum()), int(table.macs_after.sum())
    rows.append(("total", "", "", f"{human(pb)} -> {human(pa)} ({100 * pa / pb:.1f}%)",
                 f"{human(mb)} -> {human(ma)} ({100 * ma / max(mb, 1):.1f}%)", ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) if i in (0, 5) else str(v).rjust(w)
                       for i, (v, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(lines)


def _check_out(out: str | Path | None) -> None:
    """Refuse a non-empty output directory before any work (RunDir.create checks again)."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"output directory {path} already exists and is not empty; "
                            "choose a new --out DIR")


def _check_args(out: str | Path | None, ways: tuple, retrain_epochs: int, retrain_from: str,
                layers: str) -> None:
    """Every argument of :func:`prune_run` checked before any work."""
    if sum(x is not None for x in ways) != 1:
        raise UserError("give exactly one of epoch (a winning ticket), keep or params (a "
                        "ticket of that size) or percent (prune by order)")
    if retrain_from not in RETRAIN_FROM:
        raise UserError(f"retrain_from must be 'current' or 'init', got {retrain_from!r}")
    if isinstance(retrain_epochs, bool) or not isinstance(retrain_epochs, int) \
            or retrain_epochs < 0:
        raise UserError(f"retrain epochs must be an integer >= 0, got {retrain_epochs!r}")
    check_layers(layers)
    _check_out(out)


def _initial_model(run: RunDir, spec: ArchSpec) -> GrowNet:
    """``build(spec)`` holding the run's ``init/model.safetensors`` (BN statistics fresh)."""
    from safetensors.torch import load_file

    path = run.init_weights
    if not path.is_file():
        raise UserError(f"{path} not found: this run did not save its initialisation; use "
                        "--retrain-from current, or grow the run again with this grownet")
    model = build(spec)
    try:
        missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    except RuntimeError as err:
        raise UserError(f"{path} does not fit the final architecture ({str(err).splitlines()[0]})"
                        "; the run directory is inconsistent") from None
    params = {name for name, _ in model.named_parameters()}
    if unexpected or params & set(missing):
        raise UserError(f"{path} does not fit the final architecture (missing "
                        f"{sorted(params & set(missing))[:3]}, unexpected {unexpected[:3]})")
    return model


def prune_run(run_dir: str | Path, out: str | Path | None = None, epoch: int | None = None,
              percent: float | None = None, retrain_epochs: int = 0,
              retrain_from: str = "current", seed: int | None = None,
              quiet: bool = False, *, keep: float | None = None, params: int | None = None,
              layers: str = "all", force: bool = False) -> PruneResult:
    """Prune a finished run's final network and write the result as a new run directory.

    Parameters
    ----------
    run_dir
        A finished ``grow`` (or ``train --method dessilbi``) run: ``final/`` holds the
        network, ``checkpoints/last.pt`` the support tracker, ``stages/`` the specs.
    out
        The new run directory (default ``runs/prune-<timestamp>``); must not exist or be
        empty.
    epoch, percent, keep, params
        Exactly one: the winning ticket of ``epoch`` (:func:`grownet.prune.ticket`);
        prune-by-order of ``percent`` % per layer (:func:`grownet.prune.by_percent`); or
        the ticket at the first step where Γ's support reaches ``keep`` (a share of
        the net's params) or ``params`` params (:func:`grownet.prune.ticket_of_size`).
    retrain_epochs
        Retrain the slimmed net this many epochs with SGD (the run's data, batch size,
        lr, momentum, weight decay), into ``out/retrain``; 0: no retraining.
    retrain_from
        ``"current"``: fine-tune the slimmed trained weights; ``"init"``: the lottery
        procedure, the slimmed initialisation (``init/model.safetensors``).
    seed
        Seed of the retraining (default: the run's).
    quiet
        Print nothing.
    layers
        Tickets: ``"all"`` tracked layers are cut, or ``"conv"`` only (hidden linear
        layers keep every unit, as the reference lottery code does).
    force
        Cut a ticket that leaves a layer fewer than 2 units (warned on stderr); without
        it such a ticket is refused.

    Returns
    -------
    PruneResult

    Notes
    -----
    ``out`` holds ``prune.csv`` (per layer: width, kept %, params, MACs before and
    after, note, kept indices), ``events.jsonl`` (one ``prune`` event) and
    ``final/arch.json`` + ``final/model.safetensors`` of the slimmed, not retrained
    network; ``out/retrain`` is a ``train`` run directory.
    """
    _check_args(out, (epoch, percent, keep, params), retrain_epochs, retrain_from, layers)
    run = RunDir.open(run_dir)
    cfg = run.config()
    spec, model = load_final_model(run.path)
    tracker = run.load_checkpoint().get("tracker") or {}
    if not tracker:
        raise UserError(f"{run.path} has no Γ support (it was trained with --method "
                        f"{cfg.method}); prune needs a grow or --method dessilbi run")
    if percent is not None:
        keep_sel = by_percent(model, tracker, percent)
        how, what = {"percent": float(percent)}, f"prune by order, {percent}%"
    else:
        keep_sel, how, what = _ticket(run, spec, model, tracker, epoch, keep, params, layers)
        _check_units(spec, keep_sel, what, force, quiet)
    keep = keep_sel
    initial = (_initial_model(run, spec) if retrain_epochs and retrain_from == "init"
               else None)
    new_spec, new_model = slim_network(spec, model, keep)
    table = prune_table(spec, new_spec, keep)

    from grownet.data import load_dataset, make_loaders
    from grownet.train.loop import evaluate, resolve_device

    device = resolve_device(cfg.device)
    data = load_dataset(cfg.data, root=cfg.data_root or None, seed=cfg.seed)
    _, test = make_loaders(data, cfg.batch_size, device, cfg.seed)
    acc_full = evaluate(model.to(device), test, device).acc
    acc_before = evaluate(new_model.to(device), test, device).acc

    dest = RunDir.create(out, "prune")
    atomic_write_text(dest.prune_table, table.to_csv(index=False))
    dest.save_final(new_spec, new_model, extra={"test_acc": f"{acc_before:.6f}",
                                                "source": str(run.path),
                                                **{k: str(v) for k, v in how.items()}})
    before, after = count(spec), count(new_spec)
    dest.log_event({"kind": "prune", "source": str(run.path), **how,
                    "before": {"params": before.params, "macs": before.macs},
                    "after": {"params": after.params, "macs": after.macs},
                    "widths": {s: [a, b] for s, (a, b) in _widths(spec, new_spec).items()},
                    "notes": dict(keep.notes), "test_acc_full": acc_full,
                    "test_acc_slim": acc_before})
    say = (lambda text: None) if quiet else (lambda text: print(text, flush=True))
    say(f"{run.path}: {what}\n{format_table(table)}")
    say(f"test accuracy: full {acc_full * 100:.2f}%, slimmed without retraining "
        f"{acc_before * 100:.2f}%")
    result = PruneResult(dest.path, new_spec, new_model, keep, table, acc_full, acc_before)
    if retrain_epochs:
        result.acc_after = _retrain(dest, cfg, new_model, initial, keep, spec, data,
                                    retrain_epochs, seed, quiet)
        dest.log_event({"kind": "retrain", "from": retrain_from, "epochs": retrain_epochs,
                        "test_acc": result.acc_after, "run": str(dest.retrain_dir)})
        say(f"test accuracy after {retrain_epochs} epochs of retraining from "
            f"{retrain_from}: {result.acc_after * 100:.2f}%")
    say(f"pruned run: {dest.path}")
    return result


def _ticket(run: RunDir, spec: ArchSpec, model: GrowNet, tracker: dict, epoch: int | None,
            keep: float | None, params: int | None, layers: str
            ) -> tuple[Selection, dict, str]:
    """The ticket asked for, how it was chosen (for the event), and its description."""
    mode = {} if layers == "all" else {"layers": layers}
    if epoch is not None:
        sel = ticket(tracker, int(epoch), spec, run.stage_specs(), model=model, layers=layers)
        return sel, {"ticket_epoch": int(epoch), **mode}, f"ticket of epoch {epoch}"
    found = ticket_of_size(tracker, spec, params=params, keep=keep, model=model,
                           layers=layers)
    done = _epochs_done(tracker, found.step)
    size = f"{keep:g} of the params" if keep is not None else f"{params:,} params"
    what = (f"ticket of {size}: Γ's support reached it at step {found.step}, after "
            f"{done:.2f} epochs: {found.params:,} of {found.full_params:,} params")
    how = {"ticket_step": found.step, "ticket_epochs_done": round(done, 4), **mode,
           **({"keep": float(keep)} if keep is not None else {"params": int(params)})}
    return found.keep, how, what


def _epochs_done(tracker: dict, step: int) -> float:
    """Epochs trained (fractional) when optimizer step ``step`` was taken, from the
    steps the tracker recorded at the end of each epoch: ``E + 1`` at the end of the
    0-based epoch ``E``, where ``--epoch E`` takes its ticket."""
    prev = 0
    for done, rec in enumerate(tracker.get("history", [])):
        end = int(rec["step"])
        if end >= step:
            return done + (step - prev) / max(end - prev, 1)
        prev = end
    return float(len(tracker.get("history", [])))


def _check_units(spec: ArchSpec, keep: Selection, what: str, force: bool,
                 quiet: bool) -> None:
    """Refuse (or, forced, warn about) a ticket leaving a layer fewer than 2 units."""
    few = few_units(spec, keep)
    if not few:
        return
    where = ", ".join(f"{k} {n} of {w}" for k, (n, w) in few.items())
    text = (f"the {what.split(':')[0]} leaves {where} unit(s) (fewer than {MIN_UNITS}): "
            "such a layer can hardly carry the signal")
    if not force:
        raise UserError(f"{text}; take a later --epoch, a larger --keep/--params, "
                        "--layers conv, or --force to cut it anyway")
    if not quiet:
        print(f"warning: {text} (--force)", file=sys.stderr, flush=True)


def _widths(old: ArchSpec, new: ArchSpec) -> dict[str, tuple[int, int]]:
    a, b = old.widths(), new.widths()
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def _retrain(dest: RunDir, cfg: RunConfig, slimmed: GrowNet, initial: GrowNet | None,
             keep: Selection, spec: ArchSpec, data, epochs: int, seed: int | None,
             quiet: bool) -> float:
    from grownet.train.job import TrainJob

    if initial is not None:  # the lottery procedure: the kept filters' initial values
        _, start = slim_network(spec, initial, keep)
    else:
        start = slimmed
    weights = {k: v.detach().cpu().clone() for k, v in start.state_dict().items()}
    rcfg = RunConfig(command="train", arch=str(dest.final_arch),
                     method="sgd", epochs=epochs, data=cfg.data, data_root=cfg.data_root,
                     batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                     weight_decay=cfg.weight_decay, augment=cfg.augment, device=cfg.device,
                     seed=cfg.seed if seed is None else seed)
    # The job prints its summary even when quiet; prune's quiet means nothing at all.
    mute = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
    with torch.random.fork_rng(devices=[]), mute:  # leave the caller's RNG as it was
        result = TrainJob.start(rcfg, dest.retrain_dir, quiet=quiet, dataset=data,
                                weights=weights)
    return result.test_acc
