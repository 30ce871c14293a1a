"""Typed-schema base for every YAML spec: unknown keys are rejected, errors name the key path.

Example:
    >>> class Foo(Spec):
    ...     steps: int
    >>> parse(Foo, {"step": 3}, "quickstart.yaml")  # raises ConfigError
    ConfigError: quickstart.yaml: step: unknown key (allowed: steps)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A configuration problem, reported as one line naming the key path and what is allowed."""


class Spec(BaseModel):
    """Base of all config models: strict about unknown keys, immutable once built.

    A section of an experiment (the packaged ones, and a method's own) keeps the rules it shares with
    other sections in `check(exp)`, which the experiment calls once every section is parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    def check(self, exp: Any) -> None:
        """Raise ValueError naming the key when this section does not fit the rest of the experiment
        (`exp`: the whole `simreal.config.ExperimentConfig`, typed loosely because it sits above)."""


M = TypeVar("M", bound=BaseModel)
_KEY_PREFIX = re.compile(r"^([A-Za-z_][\w.]*): (.*)$")


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk `loc` through nested models to list the keys allowed at the offending level."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = _model_in(field.annotation)
        elif isinstance(current, type) and issubclass(current, BaseModel):
            continue
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The first BaseModel class inside a (possibly generic) annotation, else the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _is_tag(part: Any) -> bool:
    """Pydantic's loc entries that are not keys: validator functions and union member types."""
    return isinstance(part, str) and (part.startswith("function-") or "[" in part or part in _TYPE_TAGS)


_TYPE_TAGS = frozenset({"int", "float", "str", "bool", "list", "dict", "tuple", "none"})


def format_error(model: type[BaseModel], err: ValidationError, source: str) -> str:
    """One line: `source: key.path: message (allowed: ...)` for the first error.

    A `ConfigError` raised while validating (e.g. by a task file a config names) already says where it
    happened, so its message is kept as it is."""
    first = err.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return str(cause)
    loc = tuple(p for p in first["loc"] if not _is_tag(p))
    path = ".".join(str(p) for p in loc) or "<root>"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{source}: {path}: unknown key{hint}"
    msg = first["msg"].removeprefix("Value error, ")
    key = _KEY_PREFIX.match(msg)
    if key and loc:  # a model-level check naming its field: `effects.0` + `type: missing` -> `effects.0.type`
        path, msg = f"{path}.{key.group(1)}", key.group(2)
    extra = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    where = f"{path}: " if loc else ""
    return f"{source}: {where}{msg}{extra}"


def parse(model: type[M], data: Any, source: str, context: dict[str, Any] | None = None) -> M:
    """Validate plain data into `model`, raising ConfigError with a one-line message.

    `context` reaches validators (e.g. the directory relative paths in the data are resolved against)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as err:
        raise ConfigError(format_error(model, err, source)) from None


OFFLINE = "offline"
"""Validation-context key: read a config without importing the user code it names (analysis of a run
on a machine that lacks the user's packages needs only the data)."""


def offline(context: Any) -> bool:
    """Whether validation runs without resolving `module:attr` references (see `OFFLINE`)."""
    return bool(isinstance(context, dict) and context.get(OFFLINE))


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing or malformed file is a ConfigError naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where}: invalid YAML ({getattr(err, 'problem', err)})") from None


def config_dir() -> Path:
    """The packaged `configs/` folder (beside `envs/`, both in a checkout and in an install)."""
    import envs

    return Path(envs.__file__).resolve().parents[1] / "configs"
