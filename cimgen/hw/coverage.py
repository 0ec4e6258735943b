"""Functional coverage of the RTL runs: what the instruction stream, the
controller, the ADCs and the bus actually did under the cocotb testbench.

The testbench-only monitors of ``cocotb_tests/hdl/cim_cov_monitor.sv``, bound
into the controller, the ADC block and the AXI4-Lite slave, write a trace per
simulation (``+CIM_TRACE=<prefix>``): every executed instruction word with its
pc and image base, starts and faults, the lanes of each ADC conversion group
that landed on the table's lowest or highest level, and the bus's wait cycles
and error responses. :func:`collect` bins one trace; bins are defined from
``golden_model.isa`` (every opcode, its ``lanes`` corners, every IB-relative
bit, every ACC source, every error code), so a new instruction gets its bins
without a change here. :func:`merge` sums the per-simulation JSON files of a
test session into one report whose zero bins are the holes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golden_model import isa
from golden_model.isa import Err, Sense, Src

from .rtl_sim import RtlParams

COVERAGE_FILE = "coverage.json"


def _rel_fields(spec: isa.OpSpec) -> list[isa.Field]:
    return [f for f in spec.fields if f.width == 1 and "relative to IB" in f.doc]


def _is_vector(spec: isa.OpSpec) -> bool:
    """A DMEM vector op: its cost grows with lanes / vec_width."""
    return "vec_width" in spec.cost


def _max_lanes(ins: isa.Instr, p: RtlParams) -> int:
    if ins.op == "LDIN":
        return p.ROWS
    if ins.op == "READ" and ins["sense"] == Sense.SYM:
        return p.COLS // 2
    return p.COLS


def bins_for(p: RtlParams) -> list[str]:
    """Every bin a simulation of a ``p`` chip can hit, in report order."""
    out: list[str] = []
    for spec in isa.OPS:
        out.append(f"op {spec.name}")
        names = {f.name for f in spec.fields}
        if "lanes" in names:
            out += [f"op {spec.name} lanes=1", f"op {spec.name} lanes=max"]
            if _is_vector(spec):
                out.append(f"op {spec.name} lanes>VEC_WIDTH")
        for f in _rel_fields(spec):
            out += [f"op {spec.name} {f.name}=1", f"op {spec.name} {f.name}=1 with IB>0"]
    out += [f"READ sense={s.name} pair={pair}" for s in Sense for pair in (0, 1)]
    out += ["READ bit=signed", "READ bit=plane", "READ lanes>ADCS"]
    out += [f"READ adc table={t}" for t in range(p.ADC_TABLES)]
    out += [f"ACC src={s.name}" for s in Src] + ["ACC mul<0", "ACC sh>0"]
    out += [f"ACT k={k}" for k in (1, 2, 3)]
    out += ["LOOP count=1", "LOOP count>1", "LOOP stride=0", "LOOP stride>0", "LOOP len=1",
            "LOOP len>1", "LOOP back to the body", "LOOP body ends in a fault"]
    out += ["hazard READ then ACC(CODE)", "hazard READ then ACC(NDRV)",
            "hazard PROG then READ of that crossbar", "hazard STA then LDIN of those words",
            "hazard STA then ACC(DMEM) of those words", "hazard ACT then LDIN of those words",
            "hazard VMAX src/dst overlap", "hazard VCOPY src/dst overlap",
            "hazard ACT tbl/dst overlap"]
    out += [f"error {e.name}" for e in Err if e != Err.NONE]
    out += ["run ends at HALT", "run ends in a fault", "run starts at pc>0"]
    out += [f"ADC table={t} converts" for t in range(p.ADC_TABLES)]
    out += ["ADC lowest level (saturated low)", "ADC highest level (saturated high)"]
    out += [f"bus {k}" for k in ("aw_wait", "w_wait", "b_wait", "ar_wait", "r_wait",
                                 "bresp_slverr", "bresp_decerr", "rresp_slverr",
                                 "rresp_decerr", "aw_before_w", "w_before_aw", "aw_with_w")]
    return out


def _dmem_ranges(ins: isa.Instr, ib: int) -> tuple[list[range], list[range]]:
    """(reads, writes) of DMEM words of an instruction, IB applied."""

    def at(name: str, rel: str, n: int) -> range:
        base = ins[name] + (ib if ins.get(rel) else 0)
        return range(base, base + n)

    n = ins.get("lanes")
    op = ins.op
    if op == "LDIN":
        return [at("src", "rsrc", n)], []
    if op == "ACC" and ins["src"] == Src.DMEM:
        return [at("addr", "rel", n)], []
    if op == "STA":
        return [], [at("dst", "rel", n)]
    if op == "ACT":
        return [at("tbl", "rtbl", n * (ins["k"] + 1))], [at("dst", "rdst", n)]
    if op in ("VCOPY", "VMAX"):
        dst = at("dst", "rdst", n)
        src = at("src", "rsrc", n)
        return ([src, dst] if op == "VMAX" else [src]), [dst]
    return [], []


def _overlap(a: Iterable[range], b: Iterable[range]) -> bool:
    return any(x.start < y.stop and y.start < x.stop for x in a for y in b)


@dataclass
class _Prev:
    ins: isa.Instr
    ib: int


def _bin_ctrl(lines: list[str], p: RtlParams, hit: dict[str, int]) -> None:
    def inc(name: str) -> None:
        hit[name] = hit.get(name, 0) + 1

    prev: _Prev | None = None
    last_pc = -1
    loop_body: range | None = None
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "S":
            prev, last_pc, loop_body = None, -1, None
            if int(parts[1]) > 0:
                inc("run starts at pc>0")
            continue
        if parts[0] == "F":
            err = Err(int(parts[2]))
            inc(f"error {err.name}")
            inc("run ends in a fault")
            if loop_body is not None and int(parts[1]) in loop_body:
                inc("LOOP body ends in a fault")
            continue
        if parts[0] != "I":
            continue
        pc, ib, word = int(parts[1]), int(parts[2]), int(parts[3], 16)
        ins = isa.decode(word)
        if ins is None:  # cannot execute; the fault line says why
            continue
        spec = isa.BY_NAME[ins.op]
        inc(f"op {ins.op}")
        names = {f.name for f in spec.fields}
        if "lanes" in names:
            n = ins["lanes"]
            if n == 1:
                inc(f"op {ins.op} lanes=1")
            if n == _max_lanes(ins, p):
                inc(f"op {ins.op} lanes=max")
            if _is_vector(spec) and n > p.VEC_WIDTH:
                inc(f"op {ins.op} lanes>VEC_WIDTH")
        for f in _rel_fields(spec):
            if ins[f.name]:
                inc(f"op {ins.op} {f.name}=1")
                if ib > 0:
                    inc(f"op {ins.op} {f.name}=1 with IB>0")
        if ins.op == "READ":
            inc(f"READ sense={Sense(ins['sense']).name} pair={ins['pair']}")
            inc("READ bit=signed" if ins["bit"] == isa.BIT_SIGNED else "READ bit=plane")
            if ins["lanes"] > p.ADCS:
                inc("READ lanes>ADCS")
            inc(f"READ adc table={ins['adc']}")
        elif ins.op == "ACC":
            inc(f"ACC src={Src(ins['src']).name}")
            if ins["mul"] < 0:
                inc("ACC mul<0")
            if ins["sh"] > 0:
                inc("ACC sh>0")
        elif ins.op == "ACT":
            inc(f"ACT k={ins['k']}")
        elif ins.op == "LOOP":
            inc("LOOP count=1" if ins["count"] == 1 else "LOOP count>1")
            inc("LOOP stride=0" if ins["stride"] == 0 else "LOOP stride>0")
            inc("LOOP len=1" if ins["len"] == 1 else "LOOP len>1")
            loop_body = range(pc + 1, pc + 1 + ins["len"])
        if loop_body is not None and pc < last_pc and pc == loop_body.start:
            inc("LOOP back to the body")
        rd, wr = _dmem_ranges(ins, ib)
        if ins.op in ("VMAX", "VCOPY") and _overlap(rd[:1], wr):
            inc(f"hazard {ins.op} src/dst overlap")
        if ins.op == "ACT" and _overlap(rd, wr):
            inc("hazard ACT tbl/dst overlap")
        if prev is not None:
            a = prev.ins
            if a.op == "READ" and ins.op == "ACC" and ins["src"] in (Src.CODE, Src.NDRV):
                inc(f"hazard READ then ACC({Src(ins['src']).name})")
            if a.op == "PROG" and ins.op == "READ" and a["xbar"] == ins["xbar"]:
                inc("hazard PROG then READ of that crossbar")
            _, pwr = _dmem_ranges(a, prev.ib)
            if a.op in ("STA", "ACT") and _overlap(pwr, rd):
                target = "LDIN" if ins.op == "LDIN" else (
                    "ACC(DMEM)" if ins.op == "ACC" else "")
                if target and not (a.op == "ACT" and target != "LDIN"):
                    inc(f"hazard {a.op} then {target} of those words")
        prev = _Prev(ins, ib)
        last_pc = pc
        if ins.op == "HALT":
            inc("run ends at HALT")


def _bin_adc(lines: list[str], hit: dict[str, int]) -> None:
    for line in lines:
        parts = line.split()
        if len(parts) != 5 or parts[0] != "A":
            continue
        t, n, lo, hi = (int(x) for x in parts[1:])
        if n:
            hit[f"ADC table={t} converts"] = hit.get(f"ADC table={t} converts", 0) + 1
        if lo:
            hit["ADC lowest level (saturated low)"] = (
                hit.get("ADC lowest level (saturated low)", 0) + lo)
        if hi:
            hit["ADC highest level (saturated high)"] = (
                hit.get("ADC highest level (saturated high)", 0) + hi)


def _bin_bus(lines: list[str], hit: dict[str, int]) -> None:
    for line in lines:
        parts = line.split()
        if not parts or parts[0] != "B":
            continue
        for kv in parts[1:]:
            k, _, v = kv.partition("=")
            if v.isdigit() and int(v):
                hit[f"bus {k}"] = hit.get(f"bus {k}", 0) + int(v)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def collect(prefix: Path, params: RtlParams, *, name: str = "") -> dict[str, Any]:
    """Bin the trace files ``<prefix>.ctrl/.adc/.bus`` of one simulation and
    write ``coverage.json`` next to them; returns its contents."""
    hit: dict[str, int] = {}
    _bin_ctrl(_read_lines(prefix.with_suffix(".ctrl")), params, hit)
    _bin_adc(_read_lines(prefix.with_suffix(".adc")), hit)
    _bin_bus(_read_lines(prefix.with_suffix(".bus")), hit)
    bins = bins_for(params)
    unknown = sorted(set(hit) - set(bins))
    doc = {"name": name, "params": params.tag(),
           "bins": {b: hit.get(b, 0) for b in bins + unknown}}
    out = prefix.parent / COVERAGE_FILE
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out)
    return doc


def merge(files: Iterable[Path]) -> dict[str, Any]:
    """Sum per-simulation coverage files; a bin defined by any of them and hit
    by none is a hole."""
    total: dict[str, int] = {}
    sims = []
    for f in sorted(files):
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        sims.append(doc.get("name") or str(f.parent.name))
        for b, n in doc.get("bins", {}).items():
            total[b] = total.get(b, 0) + int(n)
    holes = [b for b, n in total.items() if n == 0]
    return {"simulations": len(sims), "bins": total, "hit": len(total) - len(holes),
            "total": len(total), "holes": holes}


def report_md(merged: dict[str, Any]) -> str:
    lines = ["# Functional coverage of the RTL runs", "",
             f"{merged['simulations']} simulation(s); {merged['hit']} of {merged['total']} "
             "bins hit.", "", "| bin | hits |", "|---|---:|"]
    lines += [f"| {b} | {n} |" for b, n in merged["bins"].items()]
    lines += ["", "## Holes", ""]
    lines += [f"* {b}" for b in merged["holes"]] or ["none"]
    return "\n".join(lines) + "\n"


def write_report(files: Iterable[Path], out_dir: Path) -> dict[str, Any]:
    """Merge and write ``summary.json`` and ``report.md`` into ``out_dir``."""
    merged = merge(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("summary.json", json.dumps(merged, indent=1) + "\n"),
                       ("report.md", report_md(merged))):
        tmp = out_dir / (name + f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(out_dir / name)
    return merged
