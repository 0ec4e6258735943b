"""CLI start-up and the compile directory's host stage.

- The real ``cimgen`` console script, run under ``python -X importtime``, imports
  no onnx, qonnx, onnxruntime, matplotlib, dask/distributed or cocotb for
  ``--help``, ``--version``, ``run`` on a compiled directory and ``replay``
  (start-up time itself is measured by scripts/bench_mvm.py, not asserted).
- ``run`` takes the input stage from host.json/host.npz: for every example model
  it quantizes exactly as the ONNX model's reference path, keeps the output ops,
  and a bad host stage exits 2 naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from cimgen.cli import main as cli_main
from cimgen.compiler import compile_network
from cimgen.compiler.artifacts import load_compiled, save_compiled
from cimgen.config import make_config
from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from golden_model.reference import quantize_input, quantize_stage

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FORBIDDEN = {"onnx", "qonnx", "onnxruntime", "matplotlib", "dask", "distributed", "cocotb",
             "cocotb_tools"}


def console_script() -> Path:
    """The installed ``cimgen`` entry point (a Python script, not a shell shim)."""
    for cand in (Path(sysconfig.get_path("scripts")) / "cimgen", shutil.which("cimgen")):
        if cand and Path(cand).is_file() and "python" in Path(cand).read_text().split("\n")[0]:
            return Path(cand)
    pytest.fail("the cimgen console script is not installed (pip install -e .)")


def imported_modules(*args: str | Path, full: bool = False) -> tuple[int, set[str], str]:
    """Run the console script under -X importtime: (exit code, top-level modules, or
    every dotted module name with ``full``, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, "-X", "importtime", str(console_script()),
                        *map(str, args)], capture_output=True, text=True, timeout=300, env=env,
                       stdin=subprocess.DEVNULL)
    mods = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                mods.add(name if full else name.split(".")[0])
    return r.returncode, mods, r.stderr


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("startup")
    net = load_model(EXAMPLES / "bnn_mlp.onnx")
    x, _ = digits_for(net.input.shape)
    np.save(d / "x.npy", x[:5])
    save_compiled(compile_network(net, make_config(None, {})), EXAMPLES / "bnn_mlp.onnx",
                  d / "c")
    return d / "c", d / "x.npy"


def test_console_script_help_and_version_import_no_heavy_module() -> None:
    from cimgen import __version__

    for args in (["--help"], ["--version"], ["run", "--help"], ["replay", "--help"]):
        rc, mods, err = imported_modules(*args)
        assert rc == 0, (args, err[-2000:])
        assert "cimgen" in mods and not mods & FORBIDDEN, (args, sorted(mods & FORBIDDEN))
        assert "numpy" not in mods or args[0] != "--version", sorted(mods)
    r = subprocess.run([sys.executable, str(console_script()), "--version"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stdout.strip() == f"cimgen {__version__}"


def test_console_script_run_imports_no_onnx(compiled: tuple[Path, Path], tmp_path: Path) -> None:
    cdir, xfile = compiled
    rc, full, err = imported_modules("run", cdir, "--inputs", xfile, "--out", tmp_path / "y.npy",
                                     full=True)
    assert rc == 0, err[-2000:]
    mods = {m.split(".")[0] for m in full}
    assert {"cimgen", "golden_model", "numpy"} <= mods
    assert not mods & FORBIDDEN, sorted(mods & FORBIDDEN)
    # Running a compiled program needs neither the compiler nor the verifier.
    # numpy.ma: numpy 2's np.unique imports it (20 ms); golden_model.kernels.unique
    # stands in for it on this path.
    heavy = {"cimgen.compiler.codegen", "cimgen.compiler.adc", "cimgen.frontend",
             "cimgen.run.verify", "golden_model.nonideal_reference", "numpy.ma"}
    assert "cimgen.compiler.compiled" in full and not full & heavy, sorted(full & heavy)
    net = load_model(EXAMPLES / "bnn_mlp.onnx")
    x = np.load(xfile)
    from golden_model.reference import infer

    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), infer(net, x))


def test_console_script_replay_imports_no_cocotb(tmp_path: Path) -> None:
    """``replay`` of a set whose checksums fail: exit 2 after the whole import path."""
    d = tmp_path / "vec"
    d.mkdir()
    (d / "manifest.json").write_text("{}")
    (d / "SHA256SUMS").write_text("0" * 64 + "  manifest.json\n")
    rc, mods, err = imported_modules("replay", d)
    assert rc == 2, err[-2000:]
    assert "cimgen" in mods and not mods & FORBIDDEN, sorted(mods & FORBIDDEN)


@pytest.mark.parametrize("model", ["bnn_mlp", "tnn_mlp", "bnn_cnn"])
def test_host_stage_quantizes_as_the_model(model: str, tmp_path: Path) -> None:
    net = load_model(EXAMPLES / f"{model}.onnx")
    save_compiled(compile_network(net, make_config(None, {})), EXAMPLES / f"{model}.onnx",
                  tmp_path / "c")
    comp = load_compiled(tmp_path / "c")
    assert comp.net is None and comp.host is not None
    x, _ = digits_for(net.input.shape)
    # Digits plus values on and around every float level boundary, and extremes.
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 20, size=(64, *net.input.shape)).astype(np.float32)
    edges = np.round(noise) / np.float32(2)
    xs = np.concatenate([x, noise, edges, np.full((1, *net.input.shape), np.float32(1e30))])
    np.testing.assert_array_equal(quantize_stage(comp.host.input, xs), quantize_input(net, xs))
    assert len(comp.host.output_ops) == len(net.output_ops)
    for a, b in zip(comp.host.output_ops, net.output_ops, strict=True):
        assert a.kind == b.kind
        np.testing.assert_array_equal(a.const, b.const)


def _rehash(d: Path, name: str) -> None:
    """Make the manifest's sha256 of ``name`` match its (edited) content."""
    man = json.loads((d / "manifest.json").read_text())
    data = (d / name).read_bytes()
    man["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (d / "manifest.json").write_text(json.dumps(man))


@pytest.mark.parametrize("edit", ["version", "quantizer-kind", "array-missing", "shape",
                                  "not-json", "npz-garbage"])
def test_bad_host_stage_exits_2(edit: str, compiled: tuple[Path, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    cdir, xfile = compiled
    d = tmp_path / "c"
    shutil.copytree(cdir, d)
    doc = json.loads((d / "host.json").read_text())
    name = "host.json"
    if edit == "version":
        doc["host_version"] = 99
    elif edit == "quantizer-kind":
        doc["input"]["quantizer"]["kind"] = "magic"
    elif edit == "array-missing":
        doc["input"]["quantizer"]["scale"] = "nope"
    elif edit == "shape":
        doc["input"]["shape"] = [65]
    (d / "host.json").write_text(json.dumps(doc))
    if edit == "not-json":
        (d / "host.json").write_text("{")
    if edit == "npz-garbage":
        name = "host.npz"
        (d / "host.npz").write_bytes(b"not a zip")
    _rehash(d, "host.json")
    _rehash(d, "host.npz")
    rc = cli_main(["run", str(d), "--inputs", str(xfile), "--out", str(tmp_path / "y.npy")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert name in err or "manifest" in err, err
    assert not (tmp_path / "y.npy").exists()


def test_old_format_is_refused(compiled: tuple[Path, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    cdir, xfile = compiled
    d = tmp_path / "c"
    shutil.copytree(cdir, d)
    man = json.loads((d / "manifest.json").read_text())
    man["format_version"] = 2
    (d / "manifest.json").write_text(json.dumps(man))
    rc = cli_main(["run", str(d), "--inputs", str(xfile), "--out", str(tmp_path / "y.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "format_version 2 is not 3" in err, err
