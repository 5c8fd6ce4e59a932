"""``prune_run``: a ticket or a prune-by-order cut of a finished run, slimmed, saved as
its own run directory, optionally retrained (fine-tuning or the lottery procedure)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grownet.cost import count, human
from grownet.errors import UserError
from grownet.nets import GrowNet, build
from grownet.prune.choose import choose
from grownet.prune.slimming import Selection, slim_network
from grownet.prune.tickets import check_layers
from grownet.runs import RunConfig, RunDir, atomic_write_text, load_final_model
from grownet.runs.config import read_toml, toml_value
from grownet.spec import ArchSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PruneArgs", "PruneResult", "prune_run", "prune_table", "resume_prune"]

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


@dataclass(frozen=True)
class PruneArgs:
    """What ``grownet prune`` was asked: saved as ``OUT/prune.toml`` first, so that
    ``grownet resume OUT`` can finish a killed prune (its retraining included)."""

    source: str
    epoch: int | None = None
    percent: float | None = None
    retrain_epochs: int = 0
    retrain_from: str = "current"
    seed: int | None = None
    keep: float | None = None
    params: int | None = None
    layers: str = "all"
    force: bool = False

    def checked(self) -> PruneArgs:
        if sum(x is not None for x in (self.epoch, self.percent, self.keep,
                                       self.params)) != 1:
            raise UserError("give exactly one of --epoch (a winning ticket), --keep or "
                            "--params (a ticket of that size) or --percent (prune by "
                            "order)")
        check_layers(self.layers)
        if self.percent is not None and not 0 <= self.percent < 100:
            raise UserError(f"--percent {self.percent:g}: must lie in [0, 100) (100 would "
                            "drop every filter; each layer keeps at least its best one)")
        if self.retrain_from not in RETRAIN_FROM:
            raise UserError(f"--retrain-from {self.retrain_from}: must be current or init")
        if isinstance(self.retrain_epochs, bool) or not isinstance(self.retrain_epochs, int) \
                or self.retrain_epochs < 0:
            raise UserError(f"--retrain-epochs {self.retrain_epochs!r}: must be an integer "
                            ">= 0")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise UserError(f"--seed {self.seed}: must be an integer from 0 to {2**63 - 1}")
        return self

    def to_toml(self) -> str:
        lines = ["# grownet prune: what was asked; 'grownet resume' continues from it"]
        lines += [f"{k} = {toml_value(v)}" for k, v in dataclasses.asdict(self).items()
                  if v is not None]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, path: Path) -> PruneArgs:
        values = read_toml(path)
        try:
            return cls(**values).checked()
        except TypeError as err:
            raise UserError(f"{path} is damaged ({err}); prune the run again into a new "
                            "--out DIR") from None


@dataclass
class _Slimmed:
    """Everything the prune computes before it writes (deterministic: a resume
    computes it again)."""

    run: RunDir
    cfg: RunConfig
    spec: ArchSpec
    keep: Selection
    new_spec: ArchSpec
    new_model: GrowNet
    initial: GrowNet | None
    table: pd.DataFrame
    data: Any
    acc_full: float
    acc_before: float
    how: dict[str, Any]  # how the filters were chosen (the prune event's keys)
    what: str


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
        empty. It is locked while the prune runs.
    epoch, percent, keep, params
        Exactly one: the winning ticket of ``epoch`` (:func:`grownet.prune.ticket`);
        prune-by-order of ``percent`` % per layer (:func:`grownet.prune.by_percent`),
        ``0 <= percent < 100``; or the ticket at the first step where Γ's support
        reaches ``keep`` (a share of the net's params) or ``params`` params
        (:func:`grownet.prune.ticket_of_size`).
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
    ``out`` holds ``prune.toml`` (these arguments), ``prune.csv`` (per layer: width,
    kept %, params, MACs before and after, note, kept indices), ``events.jsonl`` (a
    ``prune`` event, then a ``retrain`` event) and ``final/arch.json`` +
    ``final/model.safetensors`` of the slimmed, not retrained network; ``out/retrain``
    is a ``train`` run directory. A killed prune is continued by :func:`resume_prune`
    (``grownet resume OUT``).
    """
    args = PruneArgs(str(run_dir), epoch, percent, retrain_epochs, retrain_from, seed,
                     keep, params, layers, force).checked()
    RunDir.check_new(out)  # before any work; create checks again, under the lock
    work = _slim(args, quiet)
    dest = RunDir.create(out, "prune")
    try:
        return _write(dest, args, work, quiet)
    except UserError:
        if not dest.prune_table.exists():
            dest.discard()
        raise
    finally:
        dest.release()


def resume_prune(out: str | Path, quiet: bool = False) -> PruneResult:
    """Finish a prune that was killed (``grownet resume OUT``): the slimming is computed
    again (it is deterministic), files already written are kept, and the retraining
    continues from its checkpoint."""
    dest = RunDir.open_to_resume(out, marker="prune.toml")
    try:
        dest.tidy()
        args = PruneArgs.from_toml(dest.prune_plan)
        return _write(dest, args, _slim(args, quiet), quiet)
    finally:
        dest.release()


def _slim(args: PruneArgs, quiet: bool = False) -> _Slimmed:
    """Read the source run, choose the filters, slim, evaluate (nothing written)."""
    run = RunDir.open(args.source)
    cfg = run.config()
    spec, model = load_final_model(run.path)
    tracker = run.load_checkpoint().get("tracker") or {}
    if not tracker:
        raise UserError(f"{run.path} has no Γ support (it was trained with --method "
                        f"{cfg.method}); prune needs a grow or --method dessilbi run")
    keep, how, what = choose(args, run, spec, model, tracker, quiet)
    initial = (_initial_model(run, spec) if args.retrain_epochs
               and args.retrain_from == "init" else None)
    new_spec, new_model = slim_network(spec, model, keep)

    from grownet.data import load_dataset, make_loaders
    from grownet.train.loop import evaluate, resolve_device

    device = resolve_device(cfg.device)
    data = load_dataset(cfg.data, root=cfg.data_root or None, seed=cfg.seed)
    _, test = make_loaders(data, cfg.batch, device, cfg.seed)
    acc_full = evaluate(model.to(device), test, device).acc
    acc_before = evaluate(new_model.to(device), test, device).acc
    return _Slimmed(run, cfg, spec, keep, new_spec, new_model, initial,
                    prune_table(spec, new_spec, keep), data, acc_full, acc_before, how, what)


def _write(dest: RunDir, args: PruneArgs, work: _Slimmed, quiet: bool) -> PruneResult:
    """Write the prune's files (those a killed attempt wrote already are kept), then
    retrain; ``final/model.safetensors`` comes after ``prune.csv`` and the event."""
    atomic_write_text(dest.prune_plan, args.to_toml())
    atomic_write_text(dest.prune_table, work.table.to_csv(index=False))
    source, how, what = str(work.run.path), work.how, work.what
    kinds = {e.get("kind") for e in dest.events()}
    if "prune" not in kinds:
        before, after = count(work.spec), count(work.new_spec)
        dest.log_event({"kind": "prune", "source": source, **how,
                        "before": {"params": before.params, "macs": before.macs},
                        "after": {"params": after.params, "macs": after.macs},
                        "widths": {s: list(w) for s, w in
                                   _widths(work.spec, work.new_spec).items()},
                        "notes": dict(work.keep.notes), "test_acc_full": work.acc_full,
                        "test_acc_slim": work.acc_before})
    dest.save_final(work.new_spec, work.new_model,
                    extra={"test_acc": f"{work.acc_before:.6f}", "source": source,
                           **{k: str(v) for k, v in how.items()}})
    say = (lambda text: None) if quiet else (lambda text: print(text, flush=True))
    say(f"{source}: {what}\n{format_table(work.table)}")
    say(f"test accuracy: full {work.acc_full * 100:.2f}%, slimmed without retraining "
        f"{work.acc_before * 100:.2f}%")
    result = PruneResult(dest.path, work.new_spec, work.new_model, work.keep, work.table,
                         work.acc_full, work.acc_before)
    if args.retrain_epochs:
        from grownet.prune.retrain import retrain

        result.acc_after = retrain(dest, work.cfg, work.new_model, work.initial, work.keep,
                                   work.spec, work.data, args, quiet)
        if "retrain" not in kinds:
            dest.log_event({"kind": "retrain", "from": args.retrain_from,
                            "epochs": args.retrain_epochs, "test_acc": result.acc_after,
                            "run": str(dest.retrain_dir)})
        say(f"test accuracy after {args.retrain_epochs} epochs of retraining from "
            f"{args.retrain_from}: {result.acc_after * 100:.2f}%")
    say(f"pruned run: {dest.path}")
    return result


def _widths(old: ArchSpec, new: ArchSpec) -> dict[str, tuple[int, int]]:
    a, b = old.widths(), new.widths()
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}
