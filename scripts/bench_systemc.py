#!/usr/bin/env python
"""SystemC/TLM-2.0 model speed (issue 14), side by side with the cocotb flow and
the native Verilator testbench of scripts/bench_rtl.py, in one invocation.

Workload as scripts/bench_rtl.py: the digits CNN (examples/bnn_cnn.onnx)
compiled for the default crossbar config (256x256, 16 crossbars, mapping BNN_I
unless --mapping), ideal device map, the setup program once, then one
inference run per digit image (the first N). Flows:

(a) cocotb: ``cimgen.hw.rtl_sim.run_rtl`` (bench_rtl.run_cocotb).
(b) native: ``verilator --binary`` of scripts/bench_rtl_tb.sv, memories and
    inputs loaded by backdoor (bench_rtl.run_native).
(c) systemc: the example platform of systemc/ (``cimgen.vectors.systemc``): the same
    chip written as a tape-out vector set (``cimgen.vectors.model_set``), then
    replayed by the firmware-like TLM initiator through cim::TlmTarget: every
    memory, input and output through TLM transactions (bursts) and the RTL's
    AXI4-Lite port, start, wait for the interrupt, read back and compare every
    output word, register and cycle count with the golden machine.
(d) unless --no-single: (c) with one 32-bit word per TLM transaction
    (``--max-burst 1``), to show what bursts save.

Checks: cocotb and native as bench_rtl (every logit, cycle and instruction
count against the golden machine); systemc passes its own replay (every word,
register and cycle count equal to the golden machine's expectations) and its
per-run cycle counts equal the golden machine's. Speed: inferences per wall
second over the whole simulator process and over the inference runs only
(each with its input write, start, wait for done and read-back), plus
controller cycles per second as in bench_rtl. Flows run alternately, --repeat
times; ratios compare runs of the same repeat.

    python scripts/bench_systemc.py [--images 100] [--repeat 3] [--mapping BNN_I]
                                    [--no-single] [--no-docs]

Writes the section "SystemC model speed (issue 14)" of docs/benchmarks.md
unless --no-docs.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bench_rtl  # scripts/ is on sys.path when a script runs
import benchdoc
import numpy as np

from cimgen import vectors
from cimgen.compiler import Compiled
from cimgen.config import make_config
from cimgen.hw import rtl_sim
from cimgen.run import MachineRun, run_golden
from cimgen.vectors import systemc

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## SystemC model speed (issue 14)"
LABEL = {"cocotb": "cocotb", "native": "native", "systemc": "SystemC TLM",
         "single": "SystemC TLM, 1 word/transaction"}


def systemc_set(comp: Compiled, q: np.ndarray, mapping: str, d: Path
                ) -> tuple[Path, dict[str, Any]]:
    """The benchmark chip as a vector set (setup run + one run per image)."""
    cfg = make_config(None, {"mapping": mapping})
    vecs, meta = vectors.model_set(bench_rtl.MODEL, cfg, q, mappings=[mapping])
    out = d / "set"
    man, _ = vectors.write_set(out, vecs, meta)
    if len(man["duts"]) != 1 or len(man["vectors"]) != 1:
        sys.exit("expected one DUT group with one vector")
    return out, man


def run_systemc(exe: Path, set_dir: Path, stats: Path, gold: MachineRun, n: int,
                max_burst: int = 0) -> dict[str, Any]:
    stats.unlink(missing_ok=True)
    cmd = [str(exe), str(set_dir), "--dut", "g0", "--stats", str(stats)]
    if max_burst:
        cmd += ["--max-burst", str(max_burst)]
    env = {**os.environ, "SYSTEMC_DISABLE_COPYRIGHT_MESSAGE": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode or "SYSTEMC RESULT: PASSED" not in r.stdout:
        sys.exit(f"SystemC replay failed (exit {r.returncode}):\n{r.stdout[-3000:]}"
                 f"{r.stderr[-2000:]}")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("SYSTEMC STATS: "))
    kv = dict(tok.split("=", 1) for tok in line.split(": ", 1)[1].split())
    rows = [ln.split() for ln in stats.read_text().splitlines()]
    runs = [(int(x[1]), int(x[3]), int(x[4]) * 1e-6) for x in rows]  # run, cycles, seconds
    setup = [x for x in runs if x[0] == 0]
    inf = [x for x in runs if x[0] > 0]
    if len(inf) != n or len(setup) != 1:
        sys.exit(f"SystemC replay reported {len(inf)} of {n} inference runs")
    return {"cycles": np.array([x[1] for x in inf]), "setup_cycles": setup[0][1],
            "ctrl_cycles": sum(x[1] for x in runs), "process_s": wall,
            "tb_s": float(kv["thread_s"]), "load_s": float(kv["load_s"]),
            "runs_s": float(kv["run_s"]), "setup_run_s": setup[0][2],
            "infer_run_s": sum(x[2] for x in inf), "transactions": int(kv["transactions"]),
            "beats": int(kv["beats"]), "gold_ok": True}


def check_systemc(name: str, got: dict[str, Any], gold: MachineRun) -> list[str]:
    bad = []
    if not np.all(got["cycles"] == gold.result.cycles):
        bad.append(f"{name}: inference cycles {sorted(set(got['cycles'].tolist()))} != golden "
                   f"{gold.result.cycles}")
    if got["setup_cycles"] != gold.setup.cycles:
        bad.append(f"{name}: setup cycles {got['setup_cycles']} != golden {gold.setup.cycles}")
    return bad


def ips(r: dict[str, Any], what: str, n: int) -> float:
    """Inferences per wall second: whole process or inference runs only."""
    return n / (r["process_s"] if what == "process" else r["infer_run_s"])


def markdown(info: dict[str, str], cfg: dict[str, Any], params: rtl_sim.RtlParams, n: int,
             gold: MachineRun, reps: list[dict[str, Any]], builds: dict[str, str],
             cmdline: str, loads: tuple[str, str], problems: list[str], in_words: int) -> str:
    flows = list(reps[0])

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    def m_val(flow: str, key: str) -> float:
        return med([r[flow][key] for r in reps])

    def m_ips(flow: str, what: str) -> float:
        return med([ips(r[flow], what, n) for r in reps])

    def m_ratio(flow: str, what: str) -> float:
        return med([ips(r[flow], what, n) / ips(r["native"], what, n) for r in reps])

    def m_rate(flow: str, what: str) -> float:
        return med([bench_rtl.rate(r[flow], what) for r in reps])

    ctrl = reps[0]["native"]["ctrl_cycles"]
    lines = [
        SECTION, "",
        f"Command: `{cmdline}`. Machine: `nproc` = {info['nproc']}, CPU \"{info['cpu']}\" "
        f"(VM), shared with other engineers' jobs: load average {loads[0]} before and "
        f"{loads[1]} after the measurement, so absolute figures are noisy; the flows ran "
        "alternately in one invocation and every ratio compares runs of the same repeat. "
        f"Python {info['python']}, {info['tools']}, SystemC {systemc_version()} "
        "(Debian libsystemc-dev).", "",
        f"Workload (as the RTL section): examples/bnn_cnn.onnx, mapping {cfg['mapping']}, "
        f"{cfg['rows']}x{cfg['cols']} x {cfg['num_xbars']} crossbars, ideal device map, the "
        f"first {n} digit images: the setup program once ({gold.setup.cycles:,} cycles) and "
        f"the inference program per image ({gold.result.cycles:,} cycles) = {ctrl:,} "
        f"controller cycles. Same RTL parameters in every flow: "
        f"`{', '.join(f'{k}={v}' for k, v in asdict(params).items())}`.", "",
        "- **cocotb**, **native**: as in the RTL section (`run_rtl`; `verilator --binary` of "
        "scripts/bench_rtl_tb.sv with backdoor loading and read-back).",
        "- **SystemC TLM**: `cimgen systemc`'s example platform (systemc/cim_sc_main.cpp): "
        "the chip as a vector set (`cimgen.vectors.model_set`), replayed by the "
        "firmware-like initiator through `cim::TlmTarget`'s socket: program, weight rows, "
        "DMEM, ADC tables, every image's input words and outputs through TLM transactions "
        "(one burst per memory range) and the RTL's AXI4-Lite port, start, wait for the "
        "interrupt, read back and compare every output word, register and cycle count. "
        "Verilated model at `-Os` (Verilator's default, as native), program at `-O2`.",
    ]
    if "single" in flows:
        lines.append("- **SystemC TLM, 1 word/transaction**: the same with `--max-burst 1`.")
    lines += [
        "",
        "Check: every logit, cycle and instruction count of cocotb and native equals the "
        "golden machine's; the SystemC replays pass (every output word, register and cycle "
        "count equal to the golden machine's expectations) in every repeat: "
        + ("**yes**." if not problems else "**NO**: " + "; ".join(problems[:5])), "",
        "*Inferences/s*: images per wall second. *process*: the whole simulator process "
        f"(start-up, reading the device map of {params.NUM_XBARS * params.ROWS * params.COLS:,}"
        " cells, loading, setup run, inference runs); *inference runs*: only the inference "
        "runs, each with its input write, start, wait for done and read-back.", "",
        "| repeat | " + " | ".join(f"{LABEL[f]} process s" for f in flows)
        + " | " + " | ".join(f"{LABEL[f]} inferences/s (process)" for f in flows)
        + " | " + " | ".join(f"{LABEL[f]} inferences/s (inference runs)" for f in flows)
        + " | ratio SystemC/native (inference runs) |",
        "|---" * (2 + 3 * len(flows)) + "|",
    ]
    for i, r in enumerate(reps):
        lines.append(
            f"| {i + 1} | " + " | ".join(f"{r[f]['process_s']:.2f}" for f in flows) + " | "
            + " | ".join(f"{ips(r[f], 'process', n):,.1f}" for f in flows) + " | "
            + " | ".join(f"{ips(r[f], 'runs', n):,.1f}" for f in flows) + " | "
            + f"{ips(r['systemc'], 'runs', n) / ips(r['native'], 'runs', n):.2f} |")
    lines.append(
        "| median | " + " | ".join(f"{m_val(f, 'process_s'):.2f}" for f in flows) + " | "
        + " | ".join(f"{m_ips(f, 'process'):,.1f}" for f in flows) + " | "
        + " | ".join(f"**{m_ips(f, 'runs'):,.1f}**" for f in flows) + " | "
        + f"**{m_ratio('systemc', 'runs'):.2f}** |")
    lines += [
        "",
        "Where the time goes (medians):", "",
        "| | " + " | ".join(LABEL[f] for f in flows) + " |",
        "|---" * (len(flows) + 1) + "|",
        "| start-up, device map, shutdown (process - testbench/firmware) | "
        + " | ".join(f"{m_val(f, 'process_s') - m_val(f, 'tb_s'):.2f} s" for f in flows)
        + " |",
        "| loading program, weights, DMEM, ADC tables | "
        + " | ".join(f"{m_val(f, 'load_s'):.3f} s" for f in flows) + " |",
        f"| setup run ({gold.setup.cycles:,} cycles) | "
        + " | ".join(f"{m_val(f, 'setup_run_s'):.3f} s = {m_rate(f, 'setup'):,.0f} cycles/s"
                     for f in flows) + " |",
        f"| {n} inference runs ({n * gold.result.cycles:,} cycles, {in_words} input words "
        f"and {gold.logits.shape[1]} outputs each) | "
        + " | ".join(f"{m_val(f, 'infer_run_s'):.3f} s = {m_rate(f, 'infer'):,.0f} cycles/s"
                     for f in flows) + " |",
    ]
    sc = reps[0]["systemc"]
    lines += [
        "",
        "One-time builds (not in the rates): " + "; ".join(
            f"{LABEL[f]} {builds[f]}" for f in flows if f in builds) + ".",
        "",
        f"Reading: SystemC/native = {m_ratio('systemc', 'runs'):.2f} on the inference runs "
        f"and {m_ratio('systemc', 'process'):.2f} over the process; cocotb/native = "
        f"{m_ratio('cocotb', 'runs'):.2f} and {m_ratio('cocotb', 'process'):.2f}. While the "
        "controller runs, the SystemC model's clock is a method process that toggles a "
        "signal every half period, the kernel evaluates the Verilated model (built without "
        "`--timing`) on both edges and the firmware thread sleeps on the interrupt. The "
        f"setup run, with no host traffic, is also faster in SystemC "
        f"({m_rate('systemc', 'setup'):,.0f} against {m_rate('native', 'setup'):,.0f} "
        "cycles/s), so the difference lies in how the model is clocked, not on the host "
        "side: the native testbench is a `--timing` model whose clock is an HDL delay loop "
        "run by Verilator's coroutine scheduler (not profiled further). Host accesses while "
        "the controller is idle run in delta cycles (zero simulated time, annotated delay), "
        "two per clock cycle of the AXI4-Lite handshake; one SystemC replay makes "
        f"{sc['transactions']:,} TLM transactions of {sc['beats']:,} AXI4-Lite beats in "
        "all.",
    ]
    if "single" in flows:
        lines.append("")
        lines.append(
            f"With one word per transaction loading takes {m_val('single', 'load_s'):.3f} s "
            f"instead of {m_val('systemc', 'load_s'):.3f} s (bursts keep one beat in flight "
            "per AXI channel: 2 cycles per word instead of 3, and one b_transport call per "
            "range).")
    return "\n".join(lines) + "\n"


def systemc_version() -> str:
    ver = systemc.find_systemc().include / "sysc" / "kernel" / "sc_ver.h"
    text = ver.read_text() if ver.is_file() else ""
    parts = [re.search(rf"#define SC_VERSION_{k}\s+(\d+)", text) for k in ("MAJOR", "MINOR",
                                                                          "PATCH")]
    return ".".join(m.group(1) for m in parts if m) or "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100, help="digit images (the first N)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds of the flows")
    ap.add_argument("--mapping", default=None, help="mapping (default: the config's, BNN_I)")
    ap.add_argument("--no-single", action="store_true",
                    help="skip the one-word-per-transaction SystemC variant")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    cmdline = " ".join(["python scripts/bench_systemc.py", *map(shlex.quote, sys.argv[1:])])
    info = bench_rtl.machine_info()
    comp, q, cfg = bench_rtl.prepare(args.images, args.mapping)
    params = rtl_sim.rtl_params(comp.image, int(comp.cfg.prog_words))
    print(f"{cfg['mapping']}, {args.images} images; {params}")
    gold = run_golden(comp, q)
    work = rtl_sim.build_root() / f"bench-systemc-{params.tag()}"
    work.mkdir(parents=True, exist_ok=True)
    set_dir, man = systemc_set(comp, q, cfg["mapping"], work)
    set_params = rtl_sim.RtlParams(**man["duts"][0]["params"])
    if set_params != params:
        sys.exit(f"the vector set's DUT parameters differ from the benchmark's: {set_params}")
    print("building (one-time, not in the rates) ...", flush=True)
    builds: dict[str, str] = {}
    secs, new = bench_rtl.cocotb_build(params)
    builds["cocotb"] = f"{secs:.1f} s" + ("" if new else " (reused, time of its build)")
    exe_native, secs, new = bench_rtl.native_build(params)
    builds["native"] = f"{secs:.1f} s" + ("" if new else " (reused, time of its build)")
    sc = systemc.build(params, ("replay",))
    model_s = float((sc.model_dir / "cimgen.build_seconds").read_text())
    builds["systemc"] = (f"Verilator --sc model {model_s:.1f} s"
                         + ("" if sc.model_s else " (reused, time of its build)")
                         + (f", example program {sc.programs_s:.1f} s" if sc.programs_s > 1
                            else ", example program reused"))
    exe_sc = sc.programs["replay"]
    ndir = rtl_sim.build_root() / f"bench-native-{params.tag()}" / "run"
    nargs = bench_rtl.write_native_files(comp, q, params, ndir)
    devmap = rtl_sim.devmap_file(comp.image.devmap, params.CUR_W)
    flows = ["cocotb", "native", "systemc", *(() if args.no_single else ("single",))]
    load0 = bench_rtl.load_avg()
    print(f"load average before: {load0}")
    reps: list[dict[str, Any]] = []
    problems: list[str] = []
    for i in range(args.repeat):
        rep: dict[str, Any] = {}
        k = i % len(flows)
        for flow in flows[k:] + flows[:k]:
            if flow == "cocotb":
                rep[flow] = bench_rtl.run_cocotb(comp, q, params)
            elif flow == "native":
                rep[flow] = bench_rtl.run_native(exe_native, ndir, nargs, devmap, comp,
                                                 args.images)
            else:
                rep[flow] = run_systemc(exe_sc, set_dir, work / f"stats-{flow}.txt", gold,
                                        args.images, 1 if flow == "single" else 0)
        rep = {f: rep[f] for f in flows}
        for flow in ("cocotb", "native"):
            problems += bench_rtl.check(f"{LABEL[flow]} (repeat {i + 1})", rep[flow], gold)
        for flow in flows[2:]:
            problems += check_systemc(f"{LABEL[flow]} (repeat {i + 1})", rep[flow], gold)
            if rep[flow]["ctrl_cycles"] != rep["native"]["ctrl_cycles"]:
                problems.append(f"{LABEL[flow]} (repeat {i + 1}): controller cycles differ")
        print(f"repeat {i + 1}: " + "; ".join(
            f"{LABEL[f]} {rep[f]['process_s']:.2f} s, {ips(rep[f], 'process', args.images):.1f}"
            f" inf/s process, {ips(rep[f], 'runs', args.images):.1f} inf/s runs" for f in flows),
            flush=True)
        reps.append(rep)
    load1 = bench_rtl.load_avg()
    print(f"load average after: {load1}")
    for p in problems:
        print("MISMATCH:", p)
    text = markdown(info, cfg, params, args.images, gold, reps, builds, cmdline, (load0, load1),
                    problems, comp.input.size)
    print()
    print(text)
    if not args.no_docs:
        benchdoc.write_section(SECTION, text)
        print(f"wrote the section to {benchdoc.DOC.relative_to(ROOT)}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
