"""The repository stands alone: no file reads or cites a path outside it (a clone with nothing
beside it must work). D1's documents the code and tests need are in `d1/spec/`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A folder beside the repository, or this machine's own absolute paths.
OUTSIDE = re.compile(r"\.\./(?:shared|\.library)\b|(?<![\w.])/work/")


def _repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode == 0:
        return [ROOT / name for name in listed.stdout.splitlines()]
    skip = {".git", ".venv", "__pycache__", ".hypothesis", "out"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]


def test_no_file_reads_or_cites_a_path_outside_the_repository() -> None:
    found = []
    for path in _repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files cite nothing
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) and path.name != "test_self_contained.py":
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "paths outside the repository:\n" + "\n".join(found)
