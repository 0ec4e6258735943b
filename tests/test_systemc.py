"""SystemC/TLM-2.0 model of the accelerator (issue 14).

The CI vector set of tests/test_vectors.py (bnn_mlp on BNN_I and BNN_III, three
error vectors, four random programs: two DUT groups) replayed through the TLM
socket of cim::TlmTarget with every output word, register and cycle count
compared with the golden machine's expectations; corrupted expectations fail
with the run, word and address named; the C++ behaviour test of the target
(bad addresses, accesses while the controller runs, two initiators in
flight, timing annotation). Slow: the whole standard suite.

Needs the system SystemC (Debian: apt-get install libsystemc-dev); without it
these tests are skipped, except the check that the CLI says so with exit 2.
Cold builds: two Verilator --sc models (about 40 s each on 2 shared cores)
and three programs (about 15 s each), cached under build/rtl/systemc/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cimgen.cli import main
from cimgen.frontend.datasets import digits
from cimgen.hw.rtl_sim import WIN_DMEM, RtlParams
from cimgen.vectors import suite_set, write_set
from cimgen.vectors.replay_tb import REGS
from cimgen.vectors.systemc import SystemCMissingError, build, find_systemc, run_set
from golden_model import isa

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "bnn_mlp.onnx"


def _systemc_missing() -> str:
    try:
        find_systemc()
    except SystemCMissingError as e:
        return str(e)
    return ""


MISSING = _systemc_missing()
needs_systemc = pytest.mark.skipif(
    bool(MISSING), reason="SystemC is not installed (apt-get install libsystemc-dev, or set "
    "SYSTEMC_INCLUDE and SYSTEMC_LIBDIR)")
pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def vset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, _ = digits()
    d = tmp_path_factory.mktemp("sc_vec")
    np.save(d / "x.npy", x[17:19])
    out = d / "set"
    assert main(["vectors", str(MODEL), "-o", str(out), "--inputs", str(d / "x.npy"),
                 "--mappings", "BNN_I,BNN_III", "--errors", "few", "--random", "4"]) == 0
    return out


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _copy(vset: Path, tmp_path: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(vset, d)
    return d


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def _reseal(d: Path) -> None:
    """Accept edited files: recompute the manifest's and SHA256SUMS' digests."""
    man = _manifest(d)
    for name in man["files"]:
        man["files"][name] = _sha(d / name)
    (d / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    names = sorted([*man["files"], "manifest.json"])
    (d / "SHA256SUMS").write_text("".join(f"{_sha(d / n)}  {n}\n" for n in names))


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------ no SystemC


def test_missing_systemc_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SYSTEMC_INCLUDE", str(tmp_path / "none" / "include"))
    monkeypatch.setenv("SYSTEMC_LIBDIR", str(tmp_path / "none" / "lib"))
    for action in ("build", "run"):
        rc, out, err = _cli(["systemc", action, str(tmp_path)], capsys)
        assert rc == 2, out + err
        assert "SystemC is not installed" in err and "apt-get install libsystemc-dev" in err, err
        assert "Traceback" not in err


def test_bad_options_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, where in ((["--clock-ns", "0"], "--clock-ns"), (["--max-burst", "-1"],
                                                              "--max-burst")):
        rc, _, err = _cli(["systemc", "run", str(tmp_path), *args], capsys)
        assert rc == 2 and f"cimgen: error: {where}: " in err, err


# ------------------------------------------------------------------ replay


@needs_systemc
def test_ci_set_replays_through_tlm(vset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _cli(["systemc", "build", str(vset)], capsys)
    assert rc == 0, out + err
    built = re.findall(r"^(g\d): (\S+) \(model library and headers: (\S+), ", out, re.M)
    assert [g for g, _, _ in built] == ["g0", "g1"], out
    for _, exe, model in built:
        assert Path(exe).is_file() and (Path(model) / "libVcim_top.a").is_file()
    rc, out, err = _cli(["systemc", "run", str(vset)], capsys)
    assert rc == 0, out + err
    man = _manifest(vset)
    # Every register and every expected output word of every run was read
    # back and compared (counts from the manifest, not from the program).
    for v in man["vectors"]:
        words = sum(len(man["registers"]) + r["outputs"]["words"] for r in v["runs"])
        assert re.search(rf"^PASS {re.escape(v['name'])}: {len(v['runs'])} run\(s\), {words} "
                         r"word\(s\) checked$", out, re.M), out
    assert "systemc: 9 passed, 0 failed" in out


@needs_systemc
def test_every_cycle_count_and_register_equal(vset: Path) -> None:
    # Another clock period changes simulated time only, never a cycle count.
    res = run_set(vset, dump=True, clock_ns=5.0, max_burst=7)
    assert res.ok, res.failures()
    man = _manifest(vset)
    dumps = {k: v for g in res.groups for k, v in g.dump.items()}
    n = 0
    for v in man["vectors"]:
        for r, run in enumerate(v["runs"]):
            got = dumps[(v["name"], r)]
            assert got["regs"] == {k: run["expected_registers"][k] for k in REGS}
            cycles = got["regs"]["CYCLES_LO"] | got["regs"]["CYCLES_HI"] << 32
            assert cycles == run["expected_cycles"]
            if run["outputs"]["file"]:
                want = [int(t, 16) for t in (vset / run["outputs"]["file"]).read_text().split()]
                assert [got["out"][i] for i in range(len(want))] == want
            n += 1
    assert n == sum(len(v["runs"]) for v in man["vectors"]) >= 9  # every run was checked
    for g in res.groups:  # the controller cycles of all runs, summed by the firmware
        group_runs = [run for v in man["vectors"] if v["dut"] == g.dut for run in v["runs"]]
        assert g.stats["ctrl_cycles"] == sum(run["expected_cycles"] for run in group_runs)
        assert g.stats["tlm_errors"] == 0 and g.stats["runs"] == len(group_runs)
        assert g.stats["sim_ns"] >= 5.0 * g.stats["ctrl_cycles"]


@needs_systemc
def test_corrupted_expected_word_fails(vset: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy(vset, tmp_path)
    run = _manifest(d)["vectors"][1]["runs"][2]  # bnn_mlp-BNN_III, second image
    path = d / run["outputs"]["file"]
    words = path.read_text().split()
    i = 6
    old = int(words[i], 16)
    new = (old + 1) & 0xFFFFFFFF
    words[i] = f"{new:08x}"
    path.write_text("".join(w + "\n" for w in words))
    _reseal(d)
    rc, out, _ = _cli(["systemc", "run", str(d)], capsys)
    assert rc == 1
    addr = run["outputs"]["ranges"][0][0] + i
    want = (f"FAIL bnn_mlp-BNN_III: run 2 output word {i} (DMEM[{addr}], address "
            f"0x{WIN_DMEM + 4 * addr:08x}): got 0x{old:08x} expected 0x{new:08x} "
            "(1 mismatch(es))")
    assert want in out, out
    assert "PASS bnn_mlp-BNN_I:" in out and "systemc: 8 passed, 1 failed" in out


@needs_systemc
def test_changed_cycle_count_fails(vset: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy(vset, tmp_path)
    man = _manifest(d)
    run = man["vectors"][0]["runs"][1]
    cycles = run["expected_cycles"]
    run["expected_cycles"] = cycles - 1
    run["expected_registers"]["CYCLES_LO"] = cycles - 1
    (d / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    regs = d / run["registers_file"]
    words = regs.read_text().split()
    words[REGS.index("CYCLES_LO")] = f"{cycles - 1:08x}"
    regs.write_text("".join(w + "\n" for w in words))
    _reseal(d)
    rc, out, _ = _cli(["systemc", "run", str(d)], capsys)
    assert rc == 1
    want = (f"FAIL bnn_mlp-BNN_I: run 1 register CYCLES_LO (CSR 0x00000020): got "
            f"0x{cycles:08x} expected 0x{cycles - 1:08x} (1 mismatch(es))")
    assert want in out, out


@needs_systemc
def test_timeout_resets_the_device_and_goes_on(vset: Path, tmp_path: Path) -> None:
    d = _copy(vset, tmp_path)
    man = _manifest(d)
    run = man["vectors"][0]["runs"][0]  # setup run of bnn_mlp-BNN_I: 19,201 cycles
    assert run["expected_cycles"] > 2000
    run["expected_cycles"] = 1
    run["expected_registers"].update(CYCLES_LO=1, CYCLES_HI=0)
    (d / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    regs = d / run["registers_file"]
    words = regs.read_text().split()
    words[REGS.index("CYCLES_LO")] = "00000001"
    words[REGS.index("CYCLES_HI")] = "00000000"
    regs.write_text("".join(w + "\n" for w in words))
    _reseal(d)
    res = run_set(d)
    g0 = res.groups[0]
    assert not res.ok and g0.summary is not None and g0.summary[0] == 5, g0.output
    limit = man["timeout"]["factor"] * 1 + man["timeout"]["extra_cycles"]
    assert g0.lines[0] == (f"FAIL bnn_mlp-BNN_I: run 0 timeout: no interrupt after {limit} "
                           "cycles, expected 1 cycles (1 mismatch(es))"), g0.output
    assert res.groups[1].ok  # the other DUT group is unaffected


@needs_systemc
def test_bad_set_is_exit_2_before_any_build(vset: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy(vset, tmp_path)
    (d / "vectors" / "003_err-dmem-range" / "prog.hex").write_text("0\n")
    rc, _, err = _cli(["systemc", "run", str(d)], capsys)
    assert rc == 2
    assert "003_err-dmem-range/prog.hex: sha256 differs from SHA256SUMS" in err, err


@needs_systemc
def test_program_refuses_another_dut_group(vset: Path) -> None:
    man = _manifest(vset)
    exe = build(RtlParams(**man["duts"][1]["params"])).programs["replay"]  # 12x10x3
    res = subprocess.run([str(exe), str(vset), "--dut", "g0"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert ("this program's model was built with ROWS=12 but DUT group g0 has 256"
            in res.stderr), res.stderr


# ------------------------------------------------------------------ C++ test


@needs_systemc
def test_target_behaviour_cpp(vset: Path, tmp_path: Path) -> None:
    """Bad addresses, a register read and a DMEM write while the controller
    runs (two initiators in flight), timing annotation, byte enables, reset:
    systemc/cim_sc_test.cpp on the small random-program chip."""
    params = RtlParams(**_manifest(vset)["duts"][1]["params"])
    exe = build(params, ("test",)).programs["test"]
    prog = [isa.make("NOP")] * 300 + [isa.make("HALT")]
    # Expected run length from the ISA's cost table, not from the model.
    from golden_model.machine import MachineParams

    timing = MachineParams(rows=params.ROWS, cols=params.COLS, num_xbars=params.NUM_XBARS,
                           dmem_words=params.DMEM_WORDS, wmem_words=params.WMEM_WORDS,
                           adc_tables=params.ADC_TABLES, vec_width=params.VEC_WIDTH,
                           t_read=params.T_READ, t_adc=params.T_ADC, t_write=params.T_WRITE,
                           adcs_per_xbar=params.ADCS, hrs_units=params.HRS_UNITS)
    cycles = sum(isa.cost(i, timing) for i in prog)
    hexfile = tmp_path / "prog.hex"
    hexfile.write_text("".join(f"{isa.encode(i):016x}\n" for i in prog))

    def run(n: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), "--prog", str(hexfile), "--cycles", str(n),
                               "--clock-ns", "4"], capture_output=True, text=True, timeout=300)

    res = run(cycles)
    assert res.returncode == 0, res.stdout + res.stderr
    tests = re.findall(r"^TEST (\S+): (PASS|FAIL)$", res.stdout, re.M)
    assert tests == [(t, "PASS") for t in ("bad_address", "lt_annotation", "byte_enables",
                                          "two_initiators_idle", "controller_busy", "reset")]
    assert "SYSTEMC TEST RESULT: PASSED" in res.stdout
    # The test is not vacuous: a wrong expected cycle count fails it.
    bad = run(cycles + 1)
    assert bad.returncode == 1
    assert "CHECK FAILED in controller_busy: CYCLES_LO" in bad.stdout, bad.stdout


# ------------------------------------------------------------------ slow


@pytest.mark.slow
@needs_systemc
def test_standard_suite_through_tlm(tmp_path: Path) -> None:
    vectors, meta = suite_set()
    man, _ = write_set(tmp_path / "suite", vectors, meta)
    res = run_set(tmp_path / "suite", dump=True)
    assert res.ok, res.failures()[:5]
    assert res.passed == len(vectors) == len(man["vectors"])
    dumps = {k: v for g in res.groups for k, v in g.dump.items()}
    for v in man["vectors"]:
        for r, run in enumerate(v["runs"]):
            got = dumps[(v["name"], r)]
            assert got["regs"] == {k: run["expected_registers"][k] for k in REGS}
