"""The CLI's --rtl paths: `cimgen run --rtl` and `cimgen verify --rtl` (real Verilator)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from cimgen.frontend.datasets import digits

ROOT = Path(__file__).resolve().parents[1]


def _cimgen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cimgen.cli", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=900, cwd=ROOT)


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
