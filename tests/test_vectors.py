"""Tape-out vector sets and the Verilog-2001 replay testbench (issue 5).

CI set: bnn_mlp on BNN_I and BNN_III (two digit images), three error vectors on
the same chip and four random programs on the small random-program chip: two
DUT groups, two Verilator builds of the replay testbench (reused by every
replay of this module), the cocotb builds shared with cocotb_tests.
Slow: the whole standard suite, replayed and compared with the cocotb flow.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cimgen import __version__
from cimgen.cli import main
from cimgen.config import make_config
from cimgen.frontend.datasets import digits
from cimgen.frontend.onnx_import import load_model
from cimgen.hw.rtl_sim import rtl_params, simulate
from cimgen.vectors import (
    build_files,
    group_vectors,
    model_set,
    replay,
    suite_set,
    verify_set,
    write_set,
)
from cimgen.vectors.replay_tb import REGS, codegen, parse_verilog2001
from golden_model.errors import BadInputError
from golden_model.reference import quantize_input

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "bnn_mlp.onnx"
MAPPINGS = ["BNN_I", "BNN_III"]
IMAGES = slice(17, 19)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _args(out: Path, x: Path) -> list[str]:
    return ["vectors", str(MODEL), "-o", str(out), "--inputs", str(x), "--mappings",
            ",".join(MAPPINGS), "--errors", "few", "--random", "4"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, _ = digits()
    path = tmp_path_factory.mktemp("vec_in") / "x.npy"
    np.save(path, x[IMAGES])
    return path


@pytest.fixture(scope="module")
def vset(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Path:
    out = tmp_path_factory.mktemp("vec") / "set"
    assert main(_args(out, inputs)) == 0
    return out


def _copy(vset: Path, tmp_path: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(vset, d)
    return d


def _reseal(d: Path) -> None:
    """Accept edited files: recompute the manifest's and SHA256SUMS' digests."""
    man = json.loads((d / "manifest.json").read_text())
    for name in man["files"]:
        man["files"][name] = _sha(d / name)
    (d / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    names = sorted([*man["files"], "manifest.json"])
    (d / "SHA256SUMS").write_text("".join(f"{_sha(d / n)}  {n}\n" for n in names))


def _replay_cli(d: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["replay", str(d), *extra])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------ the set


def test_same_arguments_give_identical_folders(vset: Path, inputs: Path,
                                               tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(_args(again, inputs)) == 0
    a, b = _files(vset), _files(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    text = b"".join(v for k, v in a.items() if not k.startswith("devmap/"))
    assert str(vset.parent).encode() not in text and str(ROOT).encode() not in text


def test_manifest_lists_everything(vset: Path, inputs: Path) -> None:
    man = verify_set(vset)
    assert man["format_version"] == 2 and man["cimgen_version"] == __version__
    listed = set(man["files"]) | {"manifest.json", "SHA256SUMS"}
    assert listed == set(_files(vset))
    for name, digest in man["files"].items():
        assert _sha(vset / name) == digest
    sums = dict(reversed(line.split("  ", 1)) for line in
                (vset / "SHA256SUMS").read_text().splitlines())
    assert sums["manifest.json"] == _sha(vset / "manifest.json")
    # DUT parameters are rtl_params of the compiled image (config's prog_words).
    net = load_model(MODEL)
    from cimgen.compiler import compile_network

    comp = compile_network(net, make_config(None, {"mapping": "BNN_I"}))
    g0, g1 = man["duts"]
    assert g0["params"] == rtl_params(comp.image, comp.cfg.prog_words).__dict__
    assert g1["params"]["ROWS"] == 12 and g1["params"]["COLS"] == 10
    names = [v["name"] for v in man["vectors"]]
    assert names[:5] == ["bnn_mlp-BNN_I", "bnn_mlp-BNN_III", "err-illegal-opcode",
                         "err-dmem-range", "err-pc-range"]
    assert len(names) == 9 and g0["vectors"] == names[:5] and g1["vectors"] == names[5:]
    v0 = man["vectors"][0]
    assert [r["entry"] for r in v0["runs"]] == [comp.setup_entry] + [comp.infer_entry] * 2
    run = v0["runs"][1]
    assert list(run["expected_registers"]) == list(REGS)
    assert run["expected_registers"]["STATUS"] == 2 and run["expected_error"] == "NONE"
    assert run["expected_cycles"] == comp.report.cycles_per_batch
    assert comp.batch == 1 and len(run["expected_logits"]) == 1  # one slot per run
    assert run["outputs"]["words"] == comp.output.size == len(run["expected_logits"][0])
    # Expected logits are the golden machine's: equal to the reference on this ideal chip.
    from golden_model.reference import forward_int

    x, _ = digits()
    ref = np.asarray(forward_int(net, quantize_input(net, x[IMAGES])))
    assert [r["expected_logits"][0] for r in v0["runs"][1:]] == ref.tolist()
    err = man["vectors"][2]["runs"]
    assert err[0]["expected_error"] == "ILLEGAL" and err[0]["expected_registers"]["STATUS"] == 6
    assert err[1]["expected_error"] == "NONE" and err[1]["expected_cycles"] == 1
    assert man["generator"]["inputs"] == {"name": "x.npy", "images": 2, "sha256": _sha(inputs)}
    assert "coverage.md" in man["files"] and isinstance(man["coverage"]["gaps"], list)


def test_api_equals_cli(vset: Path, inputs: Path) -> None:
    vectors, meta = _api_vectors(inputs)
    files, _, _ = build_files(vectors, meta)
    assert files == _files(vset)


def _api_vectors(inputs: Path) -> tuple[list[Any], dict[str, Any]]:
    net = load_model(MODEL)
    x = np.load(inputs)
    meta = {"name": "x.npy", "images": 2, "sha256": _sha(inputs)}
    return model_set(MODEL, make_config(), quantize_input(net, x), mappings=MAPPINGS,
                     errors="few", n_random=4, inputs_meta=meta)


def test_hex_images_match_the_chip_image(vset: Path, inputs: Path) -> None:
    vectors, _ = _api_vectors(inputs)
    v = vectors[0]
    img = v.session.image
    d = vset / "vectors" / "000_bnn_mlp-BNN_I"
    prog = [int(t, 16) for t in (d / "prog.hex").read_text().split()]
    assert prog == list(img.program)
    rows = (d / "wmem.hex").read_text().split()
    assert all(len(r) == 64 for r in rows)
    bits = [[(int(r, 16) >> c) & 1 for c in range(img.params.cols)] for r in rows]
    np.testing.assert_array_equal(np.array(bits, np.uint8), img.wmem)
    thr = [int(t, 16) for t in (d / "adc_thr.hex").read_text().split()]
    thr = [t - (1 << 32) if t >> 31 else t for t in thr]
    assert thr == np.asarray(img.adc_thr).reshape(-1).tolist()
    dmem = (d / "dmem.hex").read_text().split()
    assert len(dmem) == v.session.dmem_zero_to
    dev = (vset / "devmap" / "g0.hex").read_text().splitlines()
    p = img.params
    assert len(dev) == p.num_xbars * p.rows * p.cols and dev[0] == f"0{1000:04x}{100:04x}"


def test_bad_arguments_exit_2(tmp_path: Path, inputs: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "-o", str(tmp_path / "a")]) == 2
    assert main(["vectors", str(MODEL), "-o", str(tmp_path / "a"), "--inputs", str(inputs),
                 "--mappings", "BNN_X"]) == 2
    assert main(["vectors", str(MODEL), "--suite", "-o", str(tmp_path / "a")]) == 2
    assert main(["vectors", str(MODEL), "-o", str(tmp_path / "no" / "a"), "--inputs",
                 str(inputs)]) == 2
    assert "BNN_X" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "a").exists()


# ------------------------------------------------------------------ testbench


_SV_ONLY = re.compile(r"\b(logic|always_ff|always_comb|always_latch|bit|int|byte|shortint|"
                      r"longint|string|typedef|enum|struct|package|import|interface|unique|"
                      r"priority|automatic|final)\b|\$fatal|\$error|\+:|-:|'[01xz]\b|\bassert\b")


def test_testbench_is_verilog2001(vset: Path, tmp_path: Path) -> None:
    for tb in sorted((vset / "tb").glob("*.v")):
        text = tb.read_text()
        body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("//"))
        ast = parse_verilog2001(text)  # raises on anything outside the grammar
        again = "\n".join(ln.rstrip() for ln in codegen(ast).strip("\n").splitlines())
        assert again == body.strip("\n"), "parse -> codegen must reproduce the testbench"
        code = re.sub(r'"[^"]*"', '""', body)
        assert _SV_ONLY.search(code) is None, _SV_ONLY.search(code)
        assert "module cim_replay_g" in text and "cim_top" in text and "$readmemh" in text
    if shutil.which("iverilog") is None:
        # Icarus is an optional second opinion (not a PyPI package, not in the install
        # command); the pyverilog round trip and SV-keyword scan above always run.
        pytest.skip("iverilog not installed: the -g2001 compile check is skipped")
    # Icarus in strict Verilog-2001 mode, the DUT replaced by a port-compatible stub.
    stub = tmp_path / "stub.v"
    params = ", ".join(f"{k} = 1" for k in ("ROWS", "COLS", "NUM_XBARS", "PROG_WORDS",
                                             "DMEM_WORDS", "WMEM_WORDS", "ADC_TABLES",
                                             "VEC_WIDTH", "ADCS", "T_READ", "T_ADC", "T_WRITE",
                                             "HRS_UNITS", "CUR_W"))
    ins = ["clk_i", "rst_ni", "[31:0] s_axil_awaddr_i", "[2:0] s_axil_awprot_i",
           "s_axil_awvalid_i", "[31:0] s_axil_wdata_i", "[3:0] s_axil_wstrb_i",
           "s_axil_wvalid_i", "s_axil_bready_i", "[31:0] s_axil_araddr_i",
           "[2:0] s_axil_arprot_i", "s_axil_arvalid_i", "s_axil_rready_i"]
    outs = ["s_axil_awready_o", "s_axil_wready_o", "[1:0] s_axil_bresp_o", "s_axil_bvalid_o",
            "s_axil_arready_o", "[31:0] s_axil_rdata_o", "[1:0] s_axil_rresp_o",
            "s_axil_rvalid_o", "irq_o", "busy_o"]
    ports = ", ".join([f"input {p}" for p in ins] + [f"output {p}" for p in outs])
    stub.write_text(f"module cim_top #(parameter {params}) ({ports});\nendmodule\n")
    for tb in sorted((vset / "tb").glob("*.v")):
        res = subprocess.run(["iverilog", "-g2001", "-Wall", "-o", str(tmp_path / "tb.vvp"),
                              "-s", tb.stem, str(tb), str(stub)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


# ------------------------------------------------------------------ replay


@pytest.mark.rtl
def test_replay_passes_on_verilator(vset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _replay_cli(vset, capsys)
    assert rc == 0, out + err
    man = json.loads((vset / "manifest.json").read_text())
    for v in man["vectors"]:
        assert re.search(rf"^PASS {re.escape(v['name'])}: ", out, re.M), out
    assert "REPLAY SUMMARY: 5 vectors, 5 passed, 0 failed" in out
    assert "REPLAY SUMMARY: 4 vectors, 4 passed, 0 failed" in out
    assert "replay (verilator): 9 passed, 0 failed" in out


@pytest.mark.rtl
def test_changed_expected_word_fails(vset: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy(vset, tmp_path)
    man = json.loads((d / "manifest.json").read_text())
    run = man["vectors"][1]["runs"][2]  # bnn_mlp-BNN_III, second image
    path = d / run["outputs"]["file"]
    words = path.read_text().split()
    i = 6
    old = int(words[i], 16)
    words[i] = f"{(old + 1) & 0xFFFFFFFF:08x}"
    path.write_text("".join(w + "\n" for w in words))
    _reseal(d)
    rc, out, _ = _replay_cli(d, capsys)
    assert rc == 1
    addr = run["outputs"]["ranges"][0][0] + i
    want = (f"FAIL bnn_mlp-BNN_III: run 2 output word {i} (DMEM[{addr}]): got 0x{old:08x} "
            f"expected 0x{(old + 1) & 0xFFFFFFFF:08x} (1 mismatch(es))")
    assert want in out, out
    assert "PASS bnn_mlp-BNN_I:" in out and "replay (verilator): 8 passed, 1 failed" in out


@pytest.mark.rtl
def test_changed_cycle_count_fails(vset: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy(vset, tmp_path)
    man = json.loads((d / "manifest.json").read_text())
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
    rc, out, _ = _replay_cli(d, capsys)
    assert rc == 1
    want = (f"FAIL bnn_mlp-BNN_I: run 1 register CYCLES_LO: got 0x{cycles:08x} expected "
            f"0x{cycles - 1:08x}")
    assert want in out, out


def test_tampered_or_missing_file_exit_2(vset: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    d = _copy(vset, tmp_path)
    target = d / "vectors" / "003_err-dmem-range" / "prog.hex"
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    rc, out, err = _replay_cli(d, capsys)
    assert rc == 2 and "REPLAY" not in out
    assert f"{target}: sha256 differs from SHA256SUMS (file modified?)" in err
    shutil.copy(vset / "vectors" / "003_err-dmem-range" / "prog.hex", target)
    (d / "devmap" / "g1.hex").unlink()
    rc, _, err = _replay_cli(d, capsys)
    assert rc == 2 and f"{d / 'devmap' / 'g1.hex'}: missing" in err
    shutil.copy(vset / "devmap" / "g1.hex", d / "devmap" / "g1.hex")
    man = d / "manifest.json"
    man.write_text(man.read_text().replace('"expected_cycles": 1,', '"expected_cycles": 2,', 1))
    rc, _, err = _replay_cli(d, capsys)
    assert rc == 2 and "manifest.json: sha256 differs" in err
    # Resealed, but the manifest no longer matches the registers file the testbench reads.
    _reseal(d)
    rc, _, err = _replay_cli(d, capsys)
    assert rc == 2 and "expected_cycles 2 != CYCLES registers 1" in err, err
    (d / "SHA256SUMS").unlink()
    rc, _, err = _replay_cli(d, capsys)
    assert rc == 2 and "SHA256SUMS is missing" in err
    with pytest.raises(BadInputError):
        verify_set(d)


def test_icarus_is_skipped_not_passed(vset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _replay_cli(vset, capsys, "--sim", "icarus")
    if shutil.which("iverilog") is None:
        assert rc == 3 and "skipped: iverilog not installed" in err
    else:  # Icarus reads the Verilog-2001 testbench but not the SystemVerilog DUT
        assert rc == 3 and "skipped: Icarus Verilog cannot compile the DUT" in err
    assert "PASS" not in out


# ------------------------------------------------------------------ cocotb flow


def _against_cocotb(vectors: list[Any], dumps: dict[tuple[str, int], dict[str, Any]],
                    name: str) -> int:
    """Run the same sessions through the cocotb flow (cimgen.hw.rtl_sim.simulate, the
    engine of run_rtl) and compare every register and output word with what the
    replay testbench read. Returns the number of runs compared."""
    n = 0
    for g, (chip, vecs) in enumerate(group_vectors(vectors)):
        res = simulate([v.session for v in vecs], chip.rtl, name=f"{name}-g{g}")
        for v, outs in zip(vecs, res.sessions, strict=True):
            for r, o in enumerate(outs):
                got = dumps[(v.name, r)]
                cocotb = {"STATUS": o.status, "ERROR": int(o.error),
                          "FAULT_PC": o.fault_pc & 0xFFFFFFFF, "PC": o.pc,
                          "CYCLES_LO": o.cycles & 0xFFFFFFFF, "CYCLES_HI": o.cycles >> 32,
                          "INSTRET": o.instructions, "READS": o.reads, "PROGS": o.progs}
                for k, val in cocotb.items():
                    assert got["regs"][k] == val, (v.name, r, k, got["regs"][k], val)
                words = [int(w) & 0xFFFFFFFF for d in o.data for w in d]
                assert [got["out"][i] for i in range(len(words))] == words, (v.name, r)
                assert len(got["out"]) == len(words)
                n += 1
    return n


@pytest.mark.rtl
def test_replay_agrees_with_cocotb_flow(vset: Path, inputs: Path) -> None:
    res = replay(vset, dump=True)
    assert res.ok, res.failures()
    dumps = {k: v for g in res.groups for k, v in g.dump.items()}
    vectors, _ = _api_vectors(inputs)
    runs = sum(len(v.session.runs) for v in vectors)
    assert runs >= 16 and _against_cocotb(vectors, dumps, "vectors-ci") == runs


@pytest.mark.slow
@pytest.mark.rtl
def test_standard_suite(tmp_path: Path) -> None:
    vectors, meta = suite_set()
    man, cov = write_set(tmp_path / "suite", vectors, meta)
    assert cov.gaps() == [], cov.gaps()
    kinds = {v["kind"] for v in man["vectors"]}
    assert kinds == {"model", "error", "directed", "random"}
    assert {e for e, n in cov.items["errors"].items() if n} == {
        "NONE", "ILLEGAL", "DMEM_RANGE", "XBAR_RANGE", "WMEM_RANGE", "VEC_RANGE", "ADC_RANGE",
        "PC_RANGE"}
    res = replay(tmp_path / "suite", dump=True)
    assert res.ok, res.failures()[:5]
    assert res.passed == len(vectors)
    dumps = {k: v for g in res.groups for k, v in g.dump.items()}
    assert _against_cocotb(vectors, dumps, "vectors-suite") == sum(
        len(v.session.runs) for v in vectors)
