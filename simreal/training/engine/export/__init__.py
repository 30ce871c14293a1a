"""Deployable exports of a policy artifact: ONNX or safetensors, each with a JSON description beside it.

State policies: `onnx` (the deterministic policy with its normalization folded in); pixel policies:
`pixels` (the frozen encoder in the same graph). `export_policy` picks the path from the artifact.

Example:
    >>> export_policy("runs/quickstart/finetune/seed0/policy.pt", "onnx")  # doctest: +SKIP
    PosixPath('runs/quickstart/finetune/seed0/policy.onnx')
"""

from __future__ import annotations

from pathlib import Path

from simreal.training.engine.artifacts import load_policy
from simreal.training.engine.export.onnx import (
    EXPORT_FORMAT,
    FORMATS,
    DeterministicPolicy,
    ExportError,
    Format,
    export_onnx,
    export_safetensors,
    load_safetensors,
    rebuild,
    sidecar_path,
)
from simreal.training.engine.export.pixels import export_pixel_onnx

__all__ = [
    "EXPORT_FORMAT",
    "FORMATS",
    "DeterministicPolicy",
    "ExportError",
    "Format",
    "export_onnx",
    "export_pixel_onnx",
    "export_policy",
    "export_safetensors",
    "load_safetensors",
    "rebuild",
    "sidecar_path",
]


def export_policy(model_path: str | Path, fmt: Format, out: str | Path | None = None) -> Path:
    """Export a policy artifact to `fmt` with its JSON; returns the path (default: policy.onnx beside it)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: unknown (allowed: {', '.join(FORMATS)})")
    target = Path(out) if out is not None else Path(model_path).with_suffix(f".{fmt}")
    if load_policy(model_path).meta.get("perception"):  # a pixel policy: the encoder goes in the graph
        if fmt != "onnx":
            raise ExportError(
                f"--format {fmt}: a pixel policy exports its frozen encoder with it (allowed: onnx)"
            )
        return export_pixel_onnx(model_path, target)[0]
    if fmt == "onnx":
        return export_onnx(model_path, target)[0]
    return export_safetensors(model_path, target)
