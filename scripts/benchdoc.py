"""docs/benchmarks.md: each benchmark script owns one ``## `` section of it."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(section: str, text: str, path: Path = DOC) -> None:
    """Replace (or append) the section headed ``section``; every other one is kept."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pat = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(old):
        new = pat.sub(lambda _m: text + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")
