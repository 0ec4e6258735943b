"""The CLI's --rtl paths: `cimgen run --rtl` and `cimgen verify --rtl` (real Verilator)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from cimgen.frontend.datasets import digits

ROOT = Path(__file__).resolve().parents[1]


def _cimgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cimgen.cli", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=900, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_run_rtl_equals_golden(tmp_path: Path) -> None:
    x, _ = digits("test")
    np.save(tmp_path / "x.npy", x[:4])
    comp = tmp_path / "comp"
    r = _cimgen("compile", "examples/bnn_mlp.onnx", "-o", str(comp), "--set", "mapping=BNN_V")
    assert r.returncode == 0, r.stderr
    r = _cimgen("run", str(comp), "--inputs", str(tmp_path / "x.npy"), "--out",
                str(tmp_path / "gold.npy"))
    assert r.returncode == 0, r.stderr
    r = _cimgen("run", str(comp), "--rtl", "--inputs", str(tmp_path / "x.npy"), "--out",
                str(tmp_path / "rtl.npy"))
    assert r.returncode == 0, r.stderr
    assert "simulated cycles/s" in r.stdout
    gold, rtl = np.load(tmp_path / "gold.npy"), np.load(tmp_path / "rtl.npy")
    assert rtl.dtype == np.int64 and rtl.shape == (4, 10)
    np.testing.assert_array_equal(rtl, gold)


def test_verify_rtl_cli() -> None:
    r = _cimgen("verify", "examples/bnn_cnn.onnx", "--rtl", "--images", "3", "--set",
                "mapping=TNN_II")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mismatching output words          0" in r.stdout


def test_verify_rtl_on_a_nonideal_chip() -> None:
    """Variability, stuck cells and a 5-bit ADC are loaded into the RTL's crossbar and
    ADC tables: exit 0 means RTL == golden machine == independent non-ideal reference."""
    r = _cimgen("verify", "examples/bnn_mlp.onnx", "--rtl", "--images", "3", "--set",
                "mapping=BNN_V", "--set", "adc_bits=5", "--set", "sigma_lrs_ua=4", "--set",
                "stuck_hrs_rate=0.01", "--set", "seed=3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mismatching output words          0" in r.stdout
    assert "independent non-ideal reference" in r.stdout


def test_verify_rtl_fails_on_an_rtl_mutant(tmp_path: Path) -> None:
    """A copy of rtl/ whose ACT compares sign * ACC > t instead of >= t (ties go the
    other way): the RTL disagrees with the golden machine, verify exits 1."""
    mutant = tmp_path / "rtl"
    shutil.copytree(ROOT / "rtl", mutant)
    vpu = mutant / "cim_vpu.sv"
    src = vpu.read_text()
    bad = src.replace("if (v >= 64'(signed'(t1)))", "if (v > 64'(signed'(t1)))", 1)
    assert bad != src
    vpu.write_text(bad)
    r = _cimgen("verify", "examples/bnn_cnn.onnx", "--rtl", "--images", "3", "--set",
                "mapping=BNN_I", env={"CIMGEN_RTL_DIR": str(mutant),
                                      "CIMGEN_RTL_BUILD": str(tmp_path / "build")})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "verify: FAIL: RTL != golden machine" in r.stdout
