"""The committed RTL ISA package must be exactly what golden_model/isa.py generates."""

from pathlib import Path

from cimgen.hw import isa_gen
from golden_model import isa

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "rtl" / "cim_isa_pkg.sv"


def test_package_is_current() -> None:
    assert PKG.read_text() == isa_gen.sv_package(), (
        "rtl/cim_isa_pkg.sv is stale: run `python -m cimgen.hw.isa_gen`")


def test_generation_is_deterministic() -> None:
    assert isa_gen.sv_package() == isa_gen.sv_package()


def test_package_names_every_opcode_field_and_error() -> None:
    text = isa_gen.sv_package()
    for op in isa.OPS:
        assert f"OP_{op.name} = 6'd{op.code}" in text
        for f in op.fields:
            assert f"{op.name}_{f.name.upper()}_LSB = {f.lsb};" in text
            assert f"{op.name}_{f.name.upper()}_W = {f.width};" in text
    for e in isa.Err:
        assert f"ERR_{e.name} = " in text
    assert f"ISA_VERSION = {isa.ISA_VERSION};" in text


def test_check_mode(tmp_path: Path) -> None:
    out = tmp_path / "pkg.sv"
    assert isa_gen.main(["--out", str(out), "--check"]) == 1
    assert isa_gen.main(["--out", str(out)]) == 0
    assert isa_gen.main(["--out", str(out), "--check"]) == 0
