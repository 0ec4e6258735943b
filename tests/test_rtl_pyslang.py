"""pyslang elaborates the RTL: no errors, the expected ports and parameters, and
the package constants equal golden_model/isa.py and the register map of cimgen.hw.rtl_sim."""

from __future__ import annotations

from functools import cache

import pytest

from cimgen.hw import rtl_sim
from golden_model import isa

pyslang = pytest.importorskip("pyslang")
from pyslang import ast, syntax  # noqa: E402

# Warnings the lowRISC style asks for ("unique case" always with a default).
ALLOWED_WARNINGS = {"CaseRedundantDefault"}

PORTS = {
    "clk_i": ("In", 1), "rst_ni": ("In", 1),
    "s_axil_awaddr_i": ("In", 32), "s_axil_awprot_i": ("In", 3), "s_axil_awvalid_i": ("In", 1),
    "s_axil_awready_o": ("Out", 1), "s_axil_wdata_i": ("In", 32), "s_axil_wstrb_i": ("In", 4),
    "s_axil_wvalid_i": ("In", 1), "s_axil_wready_o": ("Out", 1), "s_axil_bresp_o": ("Out", 2),
    "s_axil_bvalid_o": ("Out", 1), "s_axil_bready_i": ("In", 1),
    "s_axil_araddr_i": ("In", 32), "s_axil_arprot_i": ("In", 3), "s_axil_arvalid_i": ("In", 1),
    "s_axil_arready_o": ("Out", 1), "s_axil_rdata_o": ("Out", 32), "s_axil_rresp_o": ("Out", 2),
    "s_axil_rvalid_o": ("Out", 1), "s_axil_rready_i": ("In", 1),
    "irq_o": ("Out", 1), "busy_o": ("Out", 1),
}
PARAMS = ("ROWS", "COLS", "NUM_XBARS", "PROG_WORDS", "DMEM_WORDS", "WMEM_WORDS", "ADC_TABLES",
          "VEC_WIDTH", "ADCS", "T_READ", "T_ADC", "T_WRITE", "HRS_UNITS", "LRS_UNITS", "CUR_W",
          "COEF_BITS")


@cache
def compilation() -> ast.Compilation:
    c = ast.Compilation()
    for name in rtl_sim.RTL_SOURCES:
        c.addSyntaxTree(syntax.SyntaxTree.fromFile(str(rtl_sim.RTL_DIR / name)))
    return c


def _value(pkg: str, name: str) -> int:
    sym = compilation().getPackage(pkg).lookupName(name)
    assert sym is not None, f"{pkg}::{name} missing"
    return int(sym.value.value)


def test_elaborates_without_errors() -> None:
    c = compilation()
    diags = c.getAllDiagnostics()
    codes = {str(d.code).removeprefix("DiagCode(").removesuffix(")") for d in diags}
    errors = [d for d in diags if d.isError()]
    report = pyslang.DiagnosticEngine.reportAll(c.sourceManager, diags)
    assert not errors, report
    assert codes <= ALLOWED_WARNINGS, report
    assert [i.name for i in c.getRoot().topInstances] == [rtl_sim.TOPLEVEL]


def test_top_ports_and_parameters() -> None:
    top = compilation().getRoot().topInstances[0].body
    ports = {p.name: (str(p.direction).split(".")[-1], p.type.bitWidth) for p in top.portList}
    assert ports == PORTS
    params = {m.name: int(m.value.value) for m in top
              if m.kind == ast.SymbolKind.Parameter and not m.isLocalParam}
    assert tuple(params) == PARAMS
    assert {k: params[k] for k in ("ROWS", "COLS", "T_READ", "T_ADC")} == {
        "ROWS": 256, "COLS": 256, "T_READ": 2, "T_ADC": 1}


def test_isa_package_matches_isa_py() -> None:
    pkg = "cim_isa_pkg"
    assert _value(pkg, "ISA_VERSION") == isa.ISA_VERSION
    assert _value(pkg, "OPCODE_LSB") == isa.OPCODE_LSB
    assert _value(pkg, "OPCODE_BITS") == isa.OPCODE_BITS
    assert _value(pkg, "BIT_SIGNED") == isa.BIT_SIGNED
    for name in ("MASK_NEG", "MASK_ZERO", "MASK_POS"):
        assert _value(pkg, name) == getattr(isa, name)
    for op in isa.OPS:
        assert _value(pkg, f"OP_{op.name}") == op.code
        for f in op.fields:
            base = f"{op.name}_{f.name.upper()}"
            assert _value(pkg, f"{base}_LSB") == f.lsb, base
            assert _value(pkg, f"{base}_W") == f.width, base
            assert _value(pkg, f"{base}_SIGNED") == int(f.signed), base
    for e in isa.Err:
        assert _value(pkg, f"ERR_{e.name}") == e.value
    for s in isa.Src:
        assert _value(pkg, f"SRC_{s.name}") == s.value
    for s in isa.Sense:
        assert _value(pkg, f"SENSE_{s.name}") == s.value


def test_rtl_layout_assumptions() -> None:
    """The RTL reads every lanes field at one place and treats VMAX like VCOPY."""
    lanes = {(op.field("lanes").lsb, op.field("lanes").width) for op in isa.OPS
             if any(f.name == "lanes" for f in op.fields)}
    assert lanes == {(isa.BY_NAME["LDIN"].field("lanes").lsb,
                      isa.BY_NAME["LDIN"].field("lanes").width)}
    assert isa.BY_NAME["VMAX"].fields == isa.BY_NAME["VCOPY"].fields


def test_register_map_matches_rtl_sim() -> None:
    pkg = "cim_pkg"
    for name, off in rtl_sim.CSR.items():
        assert _value(pkg, f"CSR_{name}") == off, name
    assert _value(pkg, "CIM_ID") == rtl_sim.CIM_ID
    assert _value(pkg, "RTL_VERSION") == rtl_sim.RTL_VERSION
    wins = {"CSR": rtl_sim.WIN_CSR, "PROG": rtl_sim.WIN_PROG, "DMEM": rtl_sim.WIN_DMEM,
            "WMEM": rtl_sim.WIN_WMEM, "ADC_THR": rtl_sim.WIN_ADC_THR,
            "ADC_REC": rtl_sim.WIN_ADC_REC}
    lsb = _value(pkg, "WIN_LSB")
    for name, base in wins.items():
        assert _value(pkg, f"WIN_{name}") << lsb == base, name


def test_window_strides_for_many_sizes() -> None:
    """cim_pkg's stride functions equal cimgen.hw.rtl_sim's for sizes the
    other tests do not build (powers of two and their neighbours): a wrong
    stride overlaps tables or rows only at some sizes."""
    sizes = [2, 3, 4, 7, 8, 12, 16, 31, 32, 33, 64, 100, 128, 255, 256, 257, 512]
    lines = []
    for n in sizes:
        lines += [f"  localparam int unsigned W{n} = cim_pkg::wmem_stride({n});",
                  f"  localparam int unsigned T{n} = cim_pkg::thr_stride({n});",
                  f"  localparam int unsigned R{n} = cim_pkg::rec_stride({n});"]
    text = "module stride_probe;\n" + "\n".join(lines) + "\nendmodule\n"
    c = ast.Compilation()
    c.addSyntaxTree(syntax.SyntaxTree.fromFile(str(rtl_sim.RTL_DIR / "cim_pkg.sv")))
    c.addSyntaxTree(syntax.SyntaxTree.fromText(text, "stride_probe.sv"))
    assert not [d for d in c.getAllDiagnostics() if d.isError()]
    body = c.getRoot().topInstances[0].body
    got = {m.name: int(m.value.value) for m in body if m.kind == ast.SymbolKind.Parameter}
    for n in sizes:
        p = rtl_sim.RtlParams(ROWS=n, COLS=n, NUM_XBARS=1, PROG_WORDS=2, DMEM_WORDS=2,
                              WMEM_WORDS=2, ADC_TABLES=1, VEC_WIDTH=1, ADCS=1, T_READ=1,
                              T_ADC=1, T_WRITE=1, HRS_UNITS=1)
        assert (got[f"W{n}"], got[f"T{n}"], got[f"R{n}"]) == (
            p.wmem_stride, p.thr_stride, p.rec_stride), n
