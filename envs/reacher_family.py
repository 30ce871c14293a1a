"""A family of Reacher arms that differ in morphology: the lengths of their two links.

`LinkReacher(links=(0.1, 0.1))` is Gymnasium's Reacher-v5 (the same observation, reward and control)
with its links set to the given lengths (metres; the default arm is (0.1, 0.1), its fingertip 0.01 m
further). The model is the package's own `reacher.xml` with the link geometry and the child bodies'
positions rewritten - written once per length pair to the temp directory (nothing is downloaded). Goals
are drawn as Reacher-v5 draws them (within 0.2 m), so a short arm cannot reach every goal and a long one
overshoots more easily: tasks of one robot kind with other bodies, for multi-task pretraining.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import gymnasium
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv

FINGERTIP_GAP = 0.01
"""The default arm's fingertip sits 0.01 m beyond the end of its second link."""


def link_model(links: tuple[float, float]) -> Path:
    """The Reacher model with these link lengths (written once, atomically)."""
    first, second = (float(x) for x in links)
    if not (0.02 <= first <= 0.3 and 0.02 <= second <= 0.3):
        raise ValueError(f"links: lengths in 0.02 .. 0.3 m, got {links}")
    source = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "reacher.xml"
    xml = source.read_text()
    xml = xml.replace('fromto="0 0 0 0.1 0 0" name="link0"', f'fromto="0 0 0 {first:g} 0 0" name="link0"')
    xml = xml.replace('<body name="body1" pos="0.1 0 0">', f'<body name="body1" pos="{first:g} 0 0">')
    xml = xml.replace('fromto="0 0 0 0.1 0 0" name="link1"', f'fromto="0 0 0 {second:g} 0 0" name="link1"')
    xml = xml.replace(
        '<body name="fingertip" pos="0.11 0 0">',
        f'<body name="fingertip" pos="{second + FINGERTIP_GAP:g} 0 0">',
    )
    digest = hashlib.sha256(xml.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / "simreal-models" / f"reacher-{digest}.xml"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(xml)
        tmp.replace(path)
    return path


class LinkReacher(ReacherEnv):
    """Reacher-v5 with links of the given lengths."""

    def __init__(self, links: tuple[float, float] | list[float] = (0.1, 0.1), **kwargs: Any) -> None:
        super().__init__(xml_file=str(link_model((links[0], links[1]))), **kwargs)
