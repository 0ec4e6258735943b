"""cimgen mutate: mutant enumeration from the syntax tree, sampling, and one
mutant end to end (the full mutation run is kept out of CI: docs/verification.md)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from cimgen.cli import main
from cimgen.hw import mutate, rtl_sim

RTL = rtl_sim.RTL_DIR


def test_every_handwritten_file_has_mutants_and_the_generated_one_none() -> None:
    files = {p.name for p in mutate.rtl_files(RTL)}
    assert "cim_isa_pkg.sv" not in files  # generated: checked against its generator
    assert files == {p.name for p in RTL.glob("*.sv")} - {"cim_isa_pkg.sv"}
    per_file = Counter(m.file for m in mutate.enumerate_all(RTL))
    assert set(per_file) == files and min(per_file.values()) >= 6, per_file
    kinds = Counter(m.kind for m in mutate.enumerate_all(RTL))
    assert set(kinds) == set(mutate.KINDS), kinds


def test_mutants_edit_only_their_span_and_parse(tmp_path: Path) -> None:
    from pyslang import syntax

    for m in mutate.select(mutate.enumerate_all(RTL), 60, seed=3):
        text = (RTL / m.file).read_text()
        new = m.apply(text)
        assert new != text
        assert new[:m.start] == text[:m.start] and new[m.start + len(m.replacement):] == \
            text[m.end:]
        assert m.diff(text).count("\n-") >= 1
        tree = syntax.SyntaxTree.fromText(new, m.file)
        assert not [d for d in tree.diagnostics if d.isError()], m.describe()


def test_no_mutants_in_parameter_defaults_or_widths() -> None:
    for m in mutate.enumerate_all(RTL):
        line = (RTL / m.file).read_text().splitlines()[m.line - 1]
        assert not line.lstrip().startswith("parameter int unsigned"), m.describe()


def test_selection_is_deterministic_and_spread() -> None:
    everything = mutate.enumerate_all(RTL)
    a = mutate.select(everything, 100, seed=1)
    b = mutate.select(list(reversed(everything)), 100, seed=1)
    assert [m.id for m in a] == [m.id for m in b] and len(a) == 100
    assert len({m.id for m in a}) == 100
    per_file = Counter(m.file for m in a)
    assert min(per_file.values()) >= 6 and len(per_file) == len(mutate.rtl_files(RTL))
    assert [m.id for m in mutate.select(everything, 100, seed=2)] != [m.id for m in a]


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "s.json")
    assert main(["mutate", "--subset", "nope", "-o", out]) == 2
    assert main(["mutate", "--only", "cim_ctrl:1:op:zzzzzz", "-o", out]) == 2
    assert main(["mutate", "--rtl", str(tmp_path), "-o", out]) == 2
    assert main(["mutate", "--tests", "cocotb_tests/no_such_test.py", "-o", out]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.rtl
def test_one_mutant_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """awready stuck at 1 lets a second write address overwrite the buffered
    one: the legal raw-master test catches it."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    target = next(m for m in mutate.enumerate_all(RTL)
                  if m.file == "cim_axil_regs.sv" and m.kind == "stuck"
                  and m.original == "!aw_valid_q" and m.replacement == "'1")
    out = tmp_path / "summary.json"
    rc = main(["mutate", "--only", target.id, "--tests",
               "cocotb_tests/test_rtl_assertions.py::test_legal_raw_master_passes",
               "--budget", "900", "--jobs", "1", "--min-score", "1", "-o", str(out)])
    doc = json.loads(out.read_text())
    assert rc == 0, doc
    (o,) = doc["mutants"]
    assert o["id"] == target.id and o["status"] == "killed", o
    assert o["caught_by"] in ("assertion", "test") and o["detail"], o
    assert doc["score"] == 1.0 and doc["counts"]["killed"] == 1
    assert "mutation score 1.0" in capsys.readouterr().out
