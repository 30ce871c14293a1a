"""`events.keep_before`: what an interrupted attempt logged at or after the resume step goes."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from simreal.training.engine.events import keep_before


def _log(folder: Path, steps: range) -> None:
    with SummaryWriter(str(folder)) as writer:
        for step in steps:
            writer.add_scalar("train/loss", float(step), step)


def _steps(folder: Path) -> list[int]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [e.step for e in acc.Scalars("train/loss")] if "train/loss" in acc.Tags()["scalars"] else []


def test_values_at_or_after_the_resume_step_are_dropped(tmp_path: Path) -> None:
    _log(tmp_path, range(0, 500, 100))
    assert keep_before(tmp_path, 300) == 2
    assert _steps(tmp_path) == [0, 100, 200]
    assert keep_before(tmp_path, 300) == 0  # nothing left to drop: the file is left as it is


def test_a_stage_restarting_from_zero_keeps_nothing_and_a_cut_record_goes(tmp_path: Path) -> None:
    _log(tmp_path, range(0, 300, 100))
    [path] = list(tmp_path.glob("events.out.tfevents.*"))
    with open(path, "ab") as handle:  # a record the kill cut off
        handle.write(b"\x10\x00\x00")
    keep_before(tmp_path, 0)
    assert not list(tmp_path.glob("events.out.tfevents.*")) and _steps(tmp_path) == []


def test_a_cut_record_alone_is_removed_and_the_rest_kept(tmp_path: Path) -> None:
    _log(tmp_path, range(0, 300, 100))
    [path] = list(tmp_path.glob("events.out.tfevents.*"))
    size = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(b"\x10\x00\x00")
    assert keep_before(tmp_path, 1000) == 0
    assert path.stat().st_size == size and _steps(tmp_path) == [0, 100, 200]
