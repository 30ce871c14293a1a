"""How far a policy holds: its zero-shot return over a grid of one or two shifts of the simulation.

`simreal robustness POLICY --task FILE --sweep body_mass/pole=0.5:3.0:6 --sweep action_delay=0:3` answers
"how heavy can the real pole be, and how late the motor, before my policy fails": every cell is the
task's nominal sim with the cell's shift - a physics parameter scaled (`PARAM` or `PARAM/ELEMENT,...`,
factors of the nominal value) or an effect added (`EFFECT` or `EFFECT.ARG`, the effect's own units;
`EFFECT` alone sweeps its first argument, e.g. `action_delay` its `steps`) - each cell a target of a
derived task file, built by the same path as every target. Every cell is evaluated on the same episode
seeds. The pretraining range of each axis (the task's randomization) is drawn on the map.

Writes `robustness.json` (axes, grid, returns), `robustness.png` (a heatmap, or a curve for one axis) and
the figure as a TensorBoard image (`robustness/`). The grid runs in simulation, so its steps are not
target steps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from simreal.schema import ConfigError
from simreal.simulation.effects import EFFECTS, Effect
from simreal.simulation.physics import PhysicsSpace
from simreal.simulation.references import is_reference, load_attr
from simreal.simulation.registry import Task, ensure
from simreal.simulation.tasks import TaskSpec, load_task
from simreal.training.engine.artifacts import atomic_write_text, load_policy
from simreal.training.engine.evaluation import evaluate
from simreal.training.engine.sb3.loading import load_for_env

SEED = 300_000
"""First episode seed of every cell: the same episodes everywhere on the grid."""


@dataclass(frozen=True)
class Axis:
    """One swept shift: a physics parameter's scale factor (over some or all elements), or an effect's
    argument; its values, and the range pretraining drew it from (None: not randomized)."""

    name: str
    kind: str  # "physics" | "effect"
    param: str  # the physics parameter, or the effect type
    names: tuple[str, ...] | None  # physics: the elements scaled (None: all)
    arg: str | None  # effect: the argument swept
    values: tuple[float, ...]
    trained: tuple[float, float] | None

    def cell(self, value: float) -> dict[str, Any]:
        """This axis at `value`, as a target's physics entry or effect (`kind` says which)."""
        if self.kind == "physics":
            entry: dict[str, Any] = {"param": self.param, "value": float(value)}
            if self.names:
                entry["names"] = list(self.names)
            return entry
        assert self.arg is not None
        number = int(round(value)) if float(value).is_integer() else float(value)
        return {"type": self.param, self.arg: number}


def parse_axis(text: str, task: Task) -> Axis:
    """`NAME=LOW:HIGH[:N]` for `task` (N points, evenly spaced; without N an integer range, both ends in)."""
    where = f"--sweep {text}"
    name, sep, grid = text.partition("=")
    parts = grid.split(":")
    if not sep or len(parts) not in (2, 3):
        raise ConfigError(
            f"{where}: expected NAME=LOW:HIGH[:N] (e.g. body_mass/pole=0.5:3.0:6, action_delay=0:3)"
        )
    try:
        low, high = float(parts[0]), float(parts[1])
        count = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ConfigError(f"{where}: LOW, HIGH and N must be numbers (N an integer)") from None
    if high < low or (count is not None and count < 2):
        raise ConfigError(f"{where}: need LOW <= HIGH and N >= 2")
    if count is None:
        if not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"{where}: give N for a non-integer range (LOW:HIGH:N)")
        values = tuple(float(v) for v in range(int(low), int(high) + 1))
    else:
        values = tuple(float(v) for v in np.linspace(low, high, count))
    effect = _effect_of(name)
    if effect is not None:
        return _effect_axis(name, *effect, values, task, where)
    return _physics_axis(name, values, task, where)


def _effect_of(name: str) -> tuple[str, type[Effect], str] | None:
    """What an axis name sweeps when it names an effect - a built-in one or a user's `module:Class` -
    as (the effect's `type`, its class, the argument: `""` for its first), else None (a physics axis)."""
    module, colon, attr = name.partition(":")
    head, _, arg = (attr if colon else module).partition(".")
    if not colon:
        return (head, EFFECTS[head], arg) if head in EFFECTS else None
    try:
        found = load_attr(f"{module}:{head}", "--sweep")
    except ConfigError:
        return None
    if isinstance(found, type) and issubclass(found, Effect):
        return f"{module}:{head}", found, arg
    return None


def _effect_axis(
    name: str, effect: str, cls: type[Effect], arg: str, values: tuple[float, ...], task: Task, where: str
) -> Axis:
    params = list(cls.params)
    arg = arg or params[0]
    if arg not in params:
        raise ConfigError(f"{where}: {effect} has no argument {arg!r} (allowed: {', '.join(params)})")
    trained = None
    for spec in task.spec.source_effects:
        if spec.type == effect:
            value = spec.args.get(arg)
            if isinstance(value, list | tuple):
                trained = (float(value[0]), float(value[1]))
            elif value is not None:
                trained = (float(value), float(value))
    return Axis(name, "effect", effect, None, arg, values, trained)


def _physics_axis(name: str, values: tuple[float, ...], task: Task, where: str) -> Axis:
    param, _, selected = name.partition("/")
    env = gym.make(task.nominal_id)
    try:
        space = PhysicsSpace(env, [param] if is_reference(param) else [])
        known = space.names()
        if param not in known:
            effects = ", ".join(sorted(EFFECTS))
            raise ConfigError(
                f"{where}: {param!r} is neither a physics parameter of {task.name} ({', '.join(known)}) nor "
                f"an effect ({effects})"
            )
        elements = space.elements(param)
    finally:
        env.close()
    names = tuple(n for n in selected.split(",") if n) or None
    missing = [n for n in names or () if n not in elements]
    if missing:
        raise ConfigError(f"{where}: {param} has no element {missing[0]!r} (allowed: {', '.join(elements)})")
    trained = None
    for entry in task.spec.randomization.params:
        covers = entry.names is None or names is None or set(names) <= set(entry.names)
        if entry.param == param and covers and entry.mode == "scale" and entry.low is not None:
            trained = (float(entry.low), float(entry.high if entry.high is not None else entry.low))
    return Axis(name, "physics", param, names, None, values, trained)


def grid_task(task: Task, axes: list[Axis]) -> tuple[Task, list[tuple[int, ...]]]:
    """A task whose targets are the grid's cells (the nominal sim plus each cell's shifts), registered
    like any task; and the cells' indices in the order of its targets."""
    cells = [tuple(c) for c in np.ndindex(*(len(a.values) for a in axes))]
    targets = {}
    for index in cells:
        physics: list[dict[str, Any]] = []
        effects: list[dict[str, Any]] = []
        for axis, i in zip(axes, index, strict=True):
            (physics if axis.kind == "physics" else effects).append(axis.cell(axis.values[i]))
        targets["cell" + "_".join(map(str, index))] = {"physics": physics, "effects": effects}
    data = task.spec.model_dump(mode="json", exclude={"targets"})
    digest = hashlib.sha256(json.dumps([data, targets], sort_keys=True).encode()).hexdigest()[:8]
    where = f"{task.source} (--sweep grid)"
    spec: TaskSpec = load_task({**data, "name": f"{task.name}Grid{digest}", "targets": targets}, where=where)
    return ensure(spec), cells


def robustness(
    policy: Path, task: Task, axes: list[Axis], episodes: int, device: torch.device, out: Path
) -> dict[str, Any]:
    """Evaluate `policy` zero-shot on every cell of the grid (the same episode seeds in each); write the
    JSON, the figure and its TensorBoard image into `out`; return the JSON's data."""
    meta = load_policy(policy).meta
    pixels = bool(meta.get("pixels"))
    grid, cells = grid_task(task, axes)
    current: dict[str, str] = {}
    loaded = load_for_env(policy, lambda: gym.make(current["id"]), device, SEED)
    returns = np.zeros([len(a.values) for a in axes])
    for index, target in zip(cells, grid.spec.targets, strict=True):
        current["id"] = grid.pixel_target_id(target) if pixels else grid.target_id(target)
        result = evaluate(loaded.model, loaded.make_env, episodes, SEED, loaded.obs_rms, loaded.encoder)
        returns[index] = result.mean_return
    data = {
        "policy": str(policy),
        "task": task.name,
        "episodes": episodes,
        "episode_seeds": [SEED + i for i in range(episodes)],
        "target_steps": 0,
        "note": "every cell is the simulation (the nominal task plus the cell's shifts): no target steps",
        "axes": [
            {
                "name": a.name,
                "kind": a.kind,
                "values": list(a.values),
                "pretraining_range": list(a.trained) if a.trained else None,
            }
            for a in axes
        ],
        "returns": returns.tolist(),
        "lowest": float(returns.min()),
        "highest": float(returns.max()),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(data, indent=1), out / "robustness.json")
    figure = _figure(data, returns)
    figure.savefig(out / "robustness.png", dpi=110)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as writer:
        writer.add_figure("robustness/zero_shot_return", figure)
    return data


def _figure(data: dict[str, Any], returns: np.ndarray) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    axes = data["axes"]
    fig, ax = plt.subplots(figsize=(7, 5))
    title = f"{data['task']}: zero-shot return ({data['episodes']} episodes a cell)"
    if len(axes) == 1:
        a = axes[0]
        ax.plot(a["values"], returns, "o-")
        if a["pretraining_range"]:
            ax.axvspan(*a["pretraining_range"], color="green", alpha=0.15, label="pretraining range")
            ax.legend()
        ax.set_xlabel(a["name"])
        ax.set_ylabel("mean return")
    else:
        x, y = axes
        image = ax.imshow(returns.T, origin="lower", aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax, label="mean return")
        ax.set_xticks(range(len(x["values"])), [f"{v:g}" for v in x["values"]])
        ax.set_yticks(range(len(y["values"])), [f"{v:g}" for v in y["values"]])
        ax.set_xlabel(x["name"])
        ax.set_ylabel(y["name"])
        middle = (returns.min() + returns.max()) / 2
        for (i, j), value in np.ndenumerate(returns):
            shade = "black" if value > middle else "white"
            ax.text(i, j, f"{value:.0f}", ha="center", va="center", color=shade, fontsize=8)
        box = [_span(a) for a in (x, y)]
        if all(b is not None for b in box):
            (x0, x1), (y0, y1) = box  # type: ignore[misc]
            trained = Rectangle(
                (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=2, label="pretrained on"
            )
            ax.add_patch(trained)
            ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _span(axis: dict[str, Any]) -> tuple[float, float] | None:
    """The pretraining range in the heatmap's cell coordinates (cell i spans i - 0.5 .. i + 0.5)."""
    trained = axis["pretraining_range"]
    if trained is None:
        return None
    values = np.asarray(axis["values"], dtype=float)
    position = np.interp(trained, values, np.arange(len(values)))
    return float(position[0]) - 0.5, float(position[1]) + 0.5
