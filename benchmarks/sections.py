"""Writing a benchmark's results between its markers in BENCHMARKS.md (or another markdown file)."""

from __future__ import annotations

from pathlib import Path


def write_section(markdown: Path, start: str, end: str, text: str, heading: str) -> None:
    """Replace what lies between `start` and `end` (the markers included) with `text`, which holds
    them; a file without the markers gets `heading` and `text` appended."""
    body = markdown.read_text() if markdown.exists() else ""
    if start in body and end in body:
        body = body[: body.index(start)] + text + body[body.index(end) + len(end) :]
    else:
        body = body.rstrip() + f"\n\n## {heading}\n\n" + text + "\n"
    markdown.write_text(body)
