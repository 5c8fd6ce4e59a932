"""Retraining a slimmed net (``grownet prune --retrain-epochs N``) into ``OUT/retrain``:
a ``train`` run that a killed prune continues from its checkpoint."""

from __future__ import annotations

import contextlib
import io
import shutil
from typing import TYPE_CHECKING, Any

import torch

from grownet.nets import GrowNet
from grownet.prune.slimming import Selection, slim_network
from grownet.runs import RunConfig, RunDir, final_test_acc
from grownet.spec import ArchSpec

if TYPE_CHECKING:
    from grownet.prune.run import PruneArgs


def retrain(dest: RunDir, cfg: RunConfig, slimmed: GrowNet, initial: GrowNet | None,
            keep: Selection, spec: ArchSpec, data: Any, args: PruneArgs,
            quiet: bool) -> float:
    """Train the slimmed net (from its trained weights, or from the kept filters'
    initial values) with SGD and the source run's recipe; the test accuracy at the end.

    ``dest/retrain`` is reused as it stands: a finished one gives its accuracy, one
    with a checkpoint is resumed, one killed before its first checkpoint starts again
    (it must start from these weights, which only this call knows)."""
    from grownet.train.job import TrainJob

    folder = dest.retrain_dir
    done = RunDir(folder)
    if not done.finished:
        # The job prints its summary even when quiet; prune's quiet means nothing at all.
        mute = (contextlib.redirect_stdout(io.StringIO()) if quiet
                else contextlib.nullcontext())
        with torch.random.fork_rng(devices=[]), mute:  # leave the caller's RNG as it was
            if done.has_checkpoint():
                TrainJob.resume(folder, quiet=quiet)
            else:
                shutil.rmtree(folder, ignore_errors=True)  # dest's lock: no other writer
                _start(dest, cfg, slimmed, initial, keep, spec, data, args, quiet)
    # read back, as a resumed prune would: the same value whichever way it got here
    return final_test_acc(folder)


def _start(dest: RunDir, cfg: RunConfig, slimmed: GrowNet, initial: GrowNet | None,
           keep: Selection, spec: ArchSpec, data: Any, args: PruneArgs, quiet: bool) -> None:
    from grownet.train.job import TrainJob

    if initial is not None:  # the lottery procedure: the kept filters' initial values
        _, start = slim_network(spec, initial, keep)
    else:
        start = slimmed
    weights = {k: v.detach().cpu().clone() for k, v in start.state_dict().items()}
    # the source run's training images: its validation split stays held out
    rcfg = RunConfig(command="train", arch=str(dest.final_arch), val_frac=cfg.validation,
                     method="sgd", epochs=args.retrain_epochs, data=cfg.data,
                     data_root=cfg.data_root, batch_size=cfg.batch, lr=cfg.lr,
                     momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                     augment=cfg.augment, device=cfg.device,
                     seed=cfg.seed if args.seed is None else args.seed)
    TrainJob.start(rcfg, dest.retrain_dir, quiet=quiet, dataset=data, weights=weights)
