"""Generated documentation must match its source of truth."""

from pathlib import Path

from cimgen.hw import isa_doc

ROOT = Path(__file__).resolve().parents[1]


def test_isa_md_is_current() -> None:
    committed = (ROOT / "docs" / "isa.md").read_text()
    assert committed == isa_doc.render(), (
        "docs/isa.md is stale: run `python -m cimgen.hw.isa_doc > docs/isa.md`")
