"""The configuration reference is generated from the schema and checked in: it must be current, and it
must document every key."""

from __future__ import annotations

from pathlib import Path

from simreal.cli import main
from simreal.docgen import config_reference

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.md"


def test_the_checked_in_reference_is_current() -> None:
    assert REFERENCE.read_text() == config_reference(), (
        "docs/reference/config.md is stale: run `simreal config-reference --out docs/reference/config.md`"
    )
    assert main(["config-reference", "--out", str(REFERENCE), "--check"]) == 0


def test_every_key_has_a_type_a_default_and_a_doc() -> None:
    rows = [line for line in config_reference().splitlines() if line.startswith("| `")]
    assert len(rows) > 150
    undocumented = [row.split("|")[1].strip() for row in rows if not row.rstrip(" |").split("|")[-1].strip()]
    assert undocumented == []
    assert "| `finetune.freeze_layers` | int | 0 | >= 0 |" in config_reference()
    assert "| `evaluation.every_steps` | int | 2000 | >= 1 |" in config_reference()


def test_check_fails_in_one_line_when_stale(tmp_path: Path, capsys: object) -> None:
    stale = tmp_path / "config.md"
    stale.write_text("old")
    assert main(["config-reference", "--out", str(stale), "--check"]) == 2
    assert main(["config-reference", "--out", str(stale)]) == 0
    assert main(["config-reference", "--out", str(stale), "--check"]) == 0
