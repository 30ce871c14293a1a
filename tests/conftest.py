"""Make test helpers (`fakes.py`) importable whether or not `tests/` is a package; keep temp files in
pytest's own temporary directory (SB3's `learn()` without a logger makes a `SB3-<time>` folder there)."""

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def _temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    old, old_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tempfile"))  # workers too
    yield
    tempfile.tempdir = old
    if old_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old_env
