"""``--tensorboard``: a run's scalars and its width/support figures as TensorBoard events.

Written to ``RUN/tensorboard/`` by rank 0 while the run trains: every ``metrics.csv``
row as scalars (step = epoch), and at every growth event and at the end, the width
timeline and the Γ support heatmap drawn from the run directory so far (the figures
of ``grownet report``). Needs the optional ``tensorboard`` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grownet.errors import UserError

# metrics.csv column -> TensorBoard tag (grouped into panels by the prefix)
SCALARS = {
    "train_loss": "loss/train", "test_loss": "loss/test", "train_acc": "accuracy/train",
    "test_acc": "accuracy/test", "lr": "optim/lr", "params": "cost/params",
    "macs": "cost/macs_per_sample", "train_macs": "cost/training_macs",
    "mean_ratio": "path/mean_selection_ratio", "sparsity": "dst/sparsity",
    "keep": "sparsity/keep", "keep_target": "dst/keep_target", "alpha": "dst/alpha",
    "val_loss": "loss/val", "val_acc": "accuracy/val", "stage": "growth/stage",
}


def require_tensorboard() -> None:
    """Fail early, before anything is written, when the package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package; install it with "
                        "pip install 'grownet[tensorboard]' (or drop --tensorboard)") from None


class TensorBoardLog:
    """Event files for one run (see the module docstring).

    Parameters
    ----------
    run_path
        The run directory; events go to ``run_path/tensorboard``.
    purge_step
        On resume, the first epoch that is trained again: TensorBoard drops the
        events a killed run wrote from there on, as the CSV logs are cut back.
    """

    def __init__(self, run_path: str | Path, purge_step: int | None = None) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.run_path = Path(run_path)
        self.writer = SummaryWriter(str(self.run_path / "tensorboard"), purge_step=purge_step)

    def scalars(self, row: dict[str, Any]) -> None:
        """One ``metrics.csv`` row."""
        epoch = int(row["epoch"])
        for column, tag in SCALARS.items():
            value = row.get(column)
            if isinstance(value, (int, float)):
                self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def figures(self, epoch: int) -> None:
        """The width timeline and the support (or DST keep) heatmap of the run so far."""
        from grownet.report.figures import support_heatmap_figure, width_timeline_figure
        from grownet.report.tables import layer_epoch_matrix, read_run, width_timeline

        run = read_run(self.run_path)
        timeline = width_timeline(run.metrics, run.stages)
        if timeline.shape[1]:
            self.writer.add_figure("growth/widths", width_timeline_figure(
                timeline, run.events), epoch, close=False)
        for frame, column, label in ((run.support, "ratio", "selection ratio"),
                                     (run.keep, "keep_ratio", "keep ratio")):
            if frame is not None and len(frame):
                matrix = layer_epoch_matrix(frame, column)
                self.writer.add_figure("path/support", support_heatmap_figure(
                    matrix, label, run.events), epoch, close=False)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
