"""A run's architectures and its end products: ``final/`` (the trained net, its spec in
the safetensors metadata) and ``init/`` (each parameter's value when it was created).

``final/model.safetensors`` is written last of all, so its presence means the run
finished; a file that is there but does not parse (a half-copied folder) is
reported as damaged, and ``grownet resume`` writes it again from the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from grownet.atomic import atomic_write_bytes
from grownet.errors import UserError
from grownet.spec import ArchSpec

FINAL_MODEL = Path("final") / "model.safetensors"
INIT_MODEL = Path("init") / "model.safetensors"

OPEN, FINISHED, DAMAGED = "open", "finished", "damaged"


def load_spec(path: str | Path) -> ArchSpec:
    """The :class:`ArchSpec` in an ``arch.json`` file; a missing, unreadable or invalid
    file is a :class:`UserError` that names it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; pass a run directory or an arch.json file")
    try:
        return ArchSpec.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path} ({err}); pass a readable arch.json") from None
    except UserError as err:  # SpecError: does not parse or describes no valid net
        raise UserError(f"{path} is not a valid architecture: {err}; restore the file or "
                        "pass another arch.json or preset") from None


def arch_json_of(path: str | Path) -> Path | None:
    """The ``arch.json`` a run directory (or file path) names: the file itself,
    ``final/arch.json``, else the highest-numbered ``stages/NNN/arch.json``; ``None``
    when there is none."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        return None
    for candidate in (path / "final" / "arch.json", path / "arch.json"):
        if candidate.is_file():
            return candidate
    stages = [d for d in (path / "stages").glob("*") if d.name.isdigit()
              and (d / "arch.json").is_file()]
    if stages:
        return max(stages, key=lambda d: int(d.name)) / "arch.json"
    return None


def _tensors(model_or_params: Any) -> dict[str, torch.Tensor]:
    items = (model_or_params.state_dict() if isinstance(model_or_params, torch.nn.Module)
             else model_or_params)
    return {k: v.detach().to("cpu").contiguous() for k, v in items.items()}


def weights_bytes(spec: ArchSpec, model_or_params: Any,
                  extra: dict[str, str] | None = None) -> bytes:
    """A model's state dict (or a ``{name: tensor}`` dict) as a safetensors file (CPU
    tensors), with the spec as JSON under the metadata key ``arch`` and ``extra``
    beside it."""
    from safetensors.torch import save

    meta = {"arch": spec.to_json(indent=None), **(extra or {})}
    return save(_tensors(model_or_params), metadata=meta)


def save_initial(run: Path, spec: ArchSpec, params: dict[str, torch.Tensor]) -> Path:
    """``init/model.safetensors``: each parameter's value when it was created (the
    lottery procedure retrains from it)."""
    return atomic_write_bytes(run / INIT_MODEL, weights_bytes(spec, params))


def final_metadata(run: str | Path) -> dict[str, str] | None:
    """The metadata of ``RUN/final/model.safetensors``; ``None`` when absent.

    Raises
    ------
    UserError
        The file is there but does not parse (truncated, foreign).
    """
    path = Path(run) / FINAL_MODEL
    return _metadata(path) if path.is_file() else None


def _metadata(path: Path) -> dict[str, str]:
    """A weights file's metadata, its spec checked; a :class:`UserError` naming it when
    it does not parse."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        ArchSpec.from_json(meta["arch"])
    except Exception as err:  # safetensors, JSON and spec errors alike: the file is bad
        what = str(err).splitlines()[0] if str(err) else type(err).__name__
        run = path.parent.parent
        raise UserError(f"{path} is damaged ({what}); run 'grownet resume {run}' to write "
                        "it again from the checkpoint") from None
    return meta


def final_state(run: str | Path) -> str:
    """``finished`` (a readable final model), ``damaged`` (one that does not parse) or
    ``open`` (none yet: in progress, killed, or killed inside its finish)."""
    try:
        return OPEN if final_metadata(run) is None else FINISHED
    except UserError:
        return DAMAGED


def final_test_acc(run: str | Path) -> float | None:
    """The final evaluation's test accuracy (a fraction): the ``test_acc`` metadata of
    ``RUN/final/model.safetensors``; ``None`` when the run has not finished or the file
    carries none. A damaged file is a :class:`UserError`."""
    meta = final_metadata(run)
    value = None if meta is None else meta.get("test_acc")
    try:
        return None if value is None else float(value)
    except ValueError:
        raise UserError(f"{Path(run) / FINAL_MODEL} holds test_acc {value!r}, not a "
                        "number; run the job again") from None


def load_final_model(run: str | Path, name: str = "final"
                     ) -> tuple[ArchSpec, torch.nn.Module]:
    """The final model of a run (or another it kept, e.g. DST's ``best``), rebuilt from
    the spec stored in its safetensors file."""
    from safetensors.torch import load_file

    from grownet.nets import build

    path = Path(run) / name / "model.safetensors"
    if name == "final":
        meta = final_metadata(run)
        if meta is None:
            raise UserError(f"{path} not found: the run has not finished; run "
                            f"'grownet resume {run}' first")
    elif not path.is_file():
        raise UserError(f"{path} not found: this run kept no {name!r} model (DST runs keep "
                        "best/ and sparsest/ after their first epoch)")
    else:
        meta = _metadata(path)
    spec = ArchSpec.from_json(meta["arch"])
    model = build(spec)
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as err:  # the header parsed, the tensors do not fit it
        raise UserError(f"{path} is damaged ({str(err).splitlines()[0]}); run 'grownet "
                        f"resume {run}' to write it again from the checkpoint") from None
    return spec, model
