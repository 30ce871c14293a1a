"""A resumed stage logs each step once: what an interrupted attempt logged at or after the step the stage
resumes from is dropped from its TensorBoard event files before the stage logs again.

A stage killed after its checkpoint at step S had logged past S; one killed before any checkpoint (or a
stage that keeps none, such as zero-shot) restarts from 0. TensorBoard's own purge marker
(`SummaryWriter(purge_step=...)`) only hides such events in TensorBoard's UI, and only when the stage had
a checkpoint; other readers (scripts, the HParams export, `tbparse`) still saw two values per step. So
the engine rewrites the event files themselves (atomically; a record cut off by the kill goes too).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.summary.writer.record_writer import RecordWriter

log = logging.getLogger("simreal")

PATTERN = "events.out.tfevents.*"


def keep_before(folder: Path, step: int) -> int:
    """Drop every logged value at `step` or later from the event files directly in `folder` (its own
    runs, not its sub-folders); returns how many were dropped. Files left with no value are removed."""
    dropped = 0
    for path in sorted(folder.glob(PATTERN)):
        kept: list[bytes] = []
        gone = 0
        for record in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(record)
            if event.WhichOneof("what") == "summary" and event.step >= step:
                gone += 1
            else:
                kept.append(record)
        if gone == 0 and path.stat().st_size == sum(len(r) + 16 for r in kept):
            continue  # nothing to drop and no record cut off
        dropped += gone
        if not any(Event.FromString(r).WhichOneof("what") == "summary" for r in kept):
            path.unlink()
            continue
        _rewrite(path, kept)
    if dropped:
        log.info("%s: %d values an interrupted attempt logged at step >= %d dropped", folder, dropped, step)
    return dropped


def _rewrite(path: Path, records: list[bytes]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".events-")
    with os.fdopen(fd, "wb") as handle:
        writer = RecordWriter(handle)
        for record in records:
            writer.write(record)
        writer.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
