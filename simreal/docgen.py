"""The configuration reference, generated from the schema: every key of an experiment file and of a task
file with its type, default, allowed values and one-line doc (the field's docstring).

`simreal config-reference --out docs/reference/config.md` writes it; a test regenerates it and fails when
the checked-in file differs, so the documented defaults cannot drift from the code.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from simreal.config import ExperimentConfig
from simreal.simulation.tasks import TaskSpec

HEADER = """# Configuration reference

Generated from the schema by `simreal config-reference --out docs/reference/config.md` - do not edit by
hand (a test fails when this file and the code disagree). Unknown keys are errors; every error is one
line naming the key. Paths a config names as inputs (the task file, a weights file) are relative to the
file that names them; `output_dir` is relative to the working directory.
"""


def config_reference() -> str:
    """The whole reference as Markdown: the experiment file, then the task file."""
    parts = [HEADER, "## Experiment file (`simreal run EXPERIMENT.yaml`)\n"]
    parts += _tables(ExperimentConfig, "", skip={"task", "method_sections"}, top="Experiment file: top level")
    parts += [
        "## Task file (`task:` of an experiment: a packaged key, a path, or inline)\n",
        'Also what `register_task("my_robot.yaml")` and `simreal envs --task FILE` read. Keys as they '
        "stand in a task file (inline in an experiment, under `task:`).\n",
    ]
    parts += _tables(TaskSpec, "", skip=set(), top="Task file: top level")
    return "\n".join(parts).rstrip() + "\n"


def _tables(model: type[BaseModel], prefix: str, skip: set[str], top: str = "") -> list[str]:
    """`model`'s table, then one per model nested in it (depth first, in field order)."""
    title = f"`{prefix.rstrip('.')}`" if prefix else top
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [f"### {title}\n", f"{doc}\n" if doc else ""]
    lines.append("| key | type | default | allowed | what it does |")
    lines.append("|---|---|---|---|---|")
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        lines.append(
            f"| `{prefix}{name}` | {_cell(_type(field.annotation))} | {_cell(_default(field))} "
            f"| {_cell(_allowed(field))} | {_cell(field.description or '')} |"
        )
        for inner, suffix in _models(field.annotation):
            nested.append((f"{prefix}{name}{suffix}.", inner))
    out = ["\n".join(line for line in lines if line != "") + "\n"]
    seen: set[type[BaseModel]] = set()
    for path, inner in nested:
        if inner not in seen:
            seen.add(inner)
            out += _tables(inner, path, skip=set())
    return out


def _models(annotation: Any, suffix: str = "") -> list[tuple[type[BaseModel], str]]:
    """The models inside an annotation, with how their keys are reached (`[]` list items, `.<name>`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, suffix)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple):
        return _models(args[0], suffix + "[]")
    if origin is dict:
        return _models(args[1], suffix + ".<name>")
    return [m for a in args for m in _models(a, suffix)]


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"list[{_type(args[0])}]"
    if origin in (list, dict, tuple):
        return f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    if isinstance(value, BaseModel):
        return "(its defaults)"
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def _allowed(field: FieldInfo) -> str:
    bounds = (
        (at.Ge, "ge", ">="),
        (at.Gt, "gt", ">"),
        (at.Le, "le", "<="),
        (at.Lt, "lt", "<"),
        (at.MinLen, "min_length", "length >="),
        (at.MaxLen, "max_length", "length <="),
    )
    return ", ".join(
        f"{symbol} {getattr(item, attr)}"
        for item in field.metadata
        for kind, attr, symbol in bounds
        if isinstance(item, kind)
    )


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split()) if text else ""
