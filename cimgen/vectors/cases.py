"""The vectors a set is made of: compiled models, assembled error cases, random programs."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from golden_model import isa
from golden_model.errors import BadInputError
from golden_model.isa import Err, Sense, Src
from golden_model.machine import ChipImage
from golden_model.reference import quantize_input

from ..compiler import Compiled, compile_network
from ..config import MAPPINGS, XbarConfig, make_config, physics_refusal
from ..hw.rtl_sim import TB_DIR, RunSpec, Session, inference_session, rtl_params
from .build import Chip, Vector, golden_group

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"

#: Digit images of the standard suite: indices into the frozen digits order.
SUITE_IMAGE_START = 17
#: The standard suite's non-ideal chip (as the cocotb tests'): 3-bit ADCs,
#: device-to-device variability, stuck cells.
NONIDEAL: dict[str, object] = {"adc_bits": 3, "sigma_lrs_ua": 4.0, "sigma_hrs_ua": 1.5,
                               "stuck_lrs_rate": 0.02, "stuck_hrs_rate": 0.02, "seed": 11}
NONIDEAL_CASES = (("bnn_mlp", "BNN_III"), ("tnn_mlp", "TNN_I"))
#: A chip far smaller than the models: weights stream through it, 4 inputs per run.
STREAM: dict[str, object] = {"rows": 32, "cols": 32, "num_xbars": 2, "batch": 4,
                             "dmem_words": 8192}
STREAM_CASES = (("bnn_mlp", "BNN_I"), ("tnn_mlp", "TNN_I"), ("bnn_cnn", "BNN_III"))
#: The error vectors kept in a small set (``errors="few"``).
FEW_ERRORS = ("illegal-opcode", "dmem-range", "pc-range")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------- models


def model_chip(comp: Compiled) -> Chip:
    c = comp.cfg
    cfg = {k: v for k, v in c.to_dict().items() if k != "mapping"}
    label = (f"{c.rows}x{c.cols}x{c.num_xbars} chip, {'ideal' if c.is_ideal else 'non-ideal'}, "
             f"seed {c.seed}")
    return Chip(comp.image.params, rtl_params(comp.image, int(c.prog_words)), comp.image.devmap,
                label, cfg)


def model_vectors(net: Any, model_name: str, model_sha: str, cfg: XbarConfig, q: np.ndarray,
                  mappings: Sequence[str], *, calib: np.ndarray | None = None,
                  tag: str = "", skip_uncompilable: bool = False,
                  chip: Chip | None = None) -> tuple[list[Vector], list[dict[str, str]]]:
    """One vector per mapping: load, setup run, one inference run per image of ``q``.

    Returns the vectors and the mappings skipped because the model does not
    compile for them (only with ``skip_uncompilable``; otherwise that raises)."""
    why = physics_refusal(cfg.read_physics(), "a vector set (replayed on the RTL)")
    if why is not None:
        raise BadInputError(why, where="vectors")
    out: list[Vector] = []
    skipped: list[dict[str, str]] = []
    stem = Path(model_name).stem
    for mapping in mappings:
        if mapping not in MAPPINGS:
            raise BadInputError(f"unknown mapping '{mapping}' (known: {', '.join(MAPPINGS)})",
                                where="--mappings")
        c = XbarConfig(**{**cfg.to_dict(), "mapping": mapping}).validate()
        try:
            comp = compile_network(net, c, calib)
        except BadInputError as e:
            if not skip_uncompilable:
                raise
            skipped.append({"model": model_name, "mapping": mapping, "reason": str(e)})
            continue
        this = model_chip(comp)
        if chip is not None and chip.key == this.key:
            this = chip
        chip = this
        sess = inference_session(comp, q)
        name = f"{stem}-{mapping}" + (f"-{tag}" if tag else "")
        meta = {"model": model_name, "model_sha256": model_sha, "mapping": mapping,
                "images": int(q.shape[0]), "setup_entry": comp.setup_entry,
                "infer_entry": comp.infer_entry,
                "batch": comp.batch, "slot_stride": comp.stride,
                "input": {"dmem_addr": comp.input.base, "words": comp.input.size},
                "output": {"dmem_addr": comp.output.base, "words": comp.output.size,
                           "order": [int(i) for i in comp.output.order]},
                "config": comp.cfg.to_dict()}
        runs = comp.runs(q.shape[0])
        out.append(Vector(name, "model", chip, sess,
                          f"{model_name} compiled for {mapping}: setup run, then {runs} "
                          f"inference run(s) of {comp.batch} input(s)", meta))
    return out, skipped


# ------------------------------------------------------------------- errors


def _adc_table(rows: int) -> tuple[np.ndarray, np.ndarray]:
    n = 2 * rows
    thr = (np.arange(n, dtype=np.int64) - rows) * 7
    rec = np.arange(n + 1, dtype=np.int64) - rows
    return thr[None, :], rec[None, :]


def error_cases(chip: Chip) -> list[tuple[str, Err, list[int], list[int]]]:
    """(name, expected error, program words, entries of the runs) per error case
    that the chip's sizes can encode. Each program does a little valid work
    (LDIN, READ, ACC, STA to DMEM[8..]) before the faulting instruction, then
    has a HALT: the second run starts at the HALT (a clean run after a fault)."""
    p = chip.params
    L, C = min(4, p.rows), min(4, p.cols)
    prefix = [isa.make("INCLR"), isa.make("LDIN", dst=0, src=0, lanes=L),
              isa.make("READ", xbar=0, row_off=0, col=0, mask_a=4, mask_b=0, pair=0,
                       sense=Sense.POS, adc=0, bit=isa.BIT_SIGNED, lanes=C),
              isa.make("ACLR"), isa.make("ACC", src=Src.CODE, mul=1, sh=0, addr=0, lanes=C),
              isa.make("STA", dst=8, lanes=C)]
    words = [isa.encode(i) for i in prefix]
    halt = isa.encode(isa.make("HALT"))
    bad: list[tuple[str, Err, int | None]] = [
        ("illegal-opcode", Err.ILLEGAL, (0x3F << isa.OPCODE_LSB) | 0x2A),
        ("reserved-acc-src", Err.ILLEGAL, isa.encode(isa.make("ACC", src=3, mul=1, addr=0,
                                                              lanes=1))),
        ("reserved-act-k0", Err.ILLEGAL, isa.encode(isa.make("ACT", k=0, oscale=1, tbl=0,
                                                             dst=0, lanes=1))),
        ("reserved-read-bit", Err.ILLEGAL, isa.encode(isa.make(
            "READ", xbar=0, row_off=0, col=0, mask_a=4, adc=0, bit=8, lanes=1))),
        ("vec-range", Err.VEC_RANGE, isa.encode(isa.make("VCOPY", dst=0, src=1, lanes=0))),
        ("adc-range", Err.ADC_RANGE, isa.encode(isa.make(
            "READ", xbar=0, row_off=0, col=0, mask_a=4, adc=1, bit=isa.BIT_SIGNED, lanes=1))),
        ("wmem-range", Err.WMEM_RANGE, isa.encode(isa.make("PROG", xbar=0, row=0, wsrc=2))),
    ]
    if C >= 3 and p.dmem_words - 2 < (1 << 18):
        bad.append(("dmem-range", Err.DMEM_RANGE,
                    isa.encode(isa.make("STA", dst=p.dmem_words - 2, lanes=3))))
    if p.num_xbars <= 255:
        bad.append(("xbar-range", Err.XBAR_RANGE,
                    isa.encode(isa.make("PROG", xbar=p.num_xbars, row=0, wsrc=0))))
    if p.cols - C + 1 < (1 << 11):
        bad.append(("xbar-range-col", Err.XBAR_RANGE, isa.encode(isa.make(
            "READ", xbar=0, row_off=0, col=p.cols - C + 1, mask_a=4, adc=0,
            bit=isa.BIT_SIGNED, lanes=C))))
    out = []
    for name, err, word in bad:
        prog = [*words, word, halt]
        out.append((name, err, prog, [0, len(prog) - 1]))
    # No HALT: the pc runs off the end; then a start past the end.
    out.append(("pc-range", Err.PC_RANGE, list(words), [0, len(words) + 3]))
    return out


def error_vectors(chip: Chip, prefix: str, which: Sequence[str] | None = None,
                  seed: int = 0) -> list[Vector]:
    """Assembled programs that fault with each error code the chip can encode."""
    p = chip.params
    if p.dmem_words < 16 or p.rows < 2 or p.cols < 2:
        raise BadInputError("error vectors need at least 16 DMEM words", where="vectors")
    rng = np.random.default_rng(seed)
    thr, rec = _adc_table(p.rows)
    out = []
    cases = error_cases(chip)
    names = [c[0] for c in cases]
    for w in which or ():
        if w not in names:
            raise BadInputError(f"unknown error case '{w}' (known: {', '.join(names)})",
                                where="vectors")
    for name, err, prog, entries in cases:
        if which is not None and name not in which:
            continue
        wmem = rng.integers(0, 2, (2, p.cols)).astype(np.uint8)
        dmem = rng.integers(-3, 4, 16).astype(np.int32)
        img = ChipImage(p, tuple(prog), wmem, dmem, thr, rec, chip.devmap)
        runs = [RunSpec(e, reads=[(0, 16)]) for e in entries]
        v = Vector(f"{prefix}{name}", "error", chip, Session(img, runs, dmem_zero_to=16),
                   f"assembled program faulting with {err.name}, then a start at "
                   f"pc {entries[1]}", {"expected_error": err.name})
        got = golden_group([v])[0][0].error
        if got != err:  # the case itself is wrong: a bug here, not in the DUT
            raise AssertionError(f"error case {name}: golden machine gives {got.name}, "
                                 f"not {err.name}")
        out.append(v)
    return out


def directed_vectors(chip: Chip, prefix: str = "directed-", seed: int = 0) -> list[Vector]:
    """READ in every row-drive layout: pair=0 with every mask_a and bit-plane,
    pair=1 with every mask_a/mask_b combination on both sense modes; each READ's
    codes accumulated and stored, so the drive shows in the output words."""
    p = chip.params
    if p.dmem_words < 2 * p.rows + 2 * p.cols or p.rows < 4 or p.cols < 4:
        raise BadInputError("the directed vector needs DMEM >= 2*(rows + cols)", where="vectors")
    rng = np.random.default_rng(seed)
    n_in = p.rows
    C = min(p.cols // 2, 4)
    prog = [isa.make("INCLR"), isa.make("LDIN", dst=0, src=0, lanes=n_in), isa.make("ACLR")]
    prog += [isa.make("PROG", xbar=0, row=r, wsrc=r % 2) for r in range(min(p.rows, 8))]
    reads = []
    for m in range(8):
        for bit in (isa.BIT_SIGNED, m):
            reads.append({"pair": 0, "sense": Sense.POS, "mask_a": m, "mask_b": 0, "bit": bit})
        for mb in range(8):
            reads.append({"pair": 1, "sense": (m + mb) % 2, "mask_a": m, "mask_b": mb,
                          "bit": isa.BIT_SIGNED})
    for k, r in enumerate(reads):
        prog.append(isa.make("READ", xbar=0, row_off=0, col=0, adc=0, lanes=C, **r))
        prog.append(isa.make("ACC", src=Src.CODE, mul=(k % 5) - 2, sh=k % 3, addr=0, lanes=C))
        prog.append(isa.make("ACC", src=Src.NDRV, mul=1, sh=0, addr=0, lanes=C))
    prog += [isa.make("STA", dst=n_in, lanes=C), isa.make("HALT")]
    words = tuple(isa.encode(i) for i in prog)
    thr, rec = _adc_table(p.rows)
    wmem = rng.integers(0, 2, (2, p.cols)).astype(np.uint8)
    dmem = rng.integers(-3, 4, n_in).astype(np.int32)
    dmem[:4] = [-1, 0, 1, 5]
    img = ChipImage(p, words, wmem, dmem, thr, rec, chip.devmap)
    n = n_in + C
    return [Vector(f"{prefix}read-modes", "directed", chip,
                   Session(img, [RunSpec(0, reads=[(0, n)])], dmem_zero_to=n),
                   "READ with every pair/sense mode, row-drive mask and bit-plane",
                   {"reads": len(reads)})]


# ------------------------------------------------------------------- random


def _progs_module() -> Any:
    """cocotb_tests/progs.py: the seeded random program generator of the RTL tests."""
    if str(TB_DIR) not in sys.path:
        sys.path.insert(0, str(TB_DIR))
    try:
        import progs  # type: ignore[import-not-found]
    except ImportError as e:
        raise BadInputError(f"random programs need cocotb_tests/progs.py from a source "
                            f"checkout ({e})", where="vectors") from None
    return progs


def random_chip(seed: int) -> Chip:
    progs = _progs_module()
    p = progs.RANDOM_PARAMS
    dev = progs.random_devmap(p, seed)
    img = ChipImage(p, (0,), np.zeros((1, p.cols), np.uint8), np.zeros(0, np.int32),
                    np.zeros((1, 2 * p.rows), np.int64), np.zeros((1, 2 * p.rows + 1), np.int64),
                    dev)
    return Chip(p, rtl_params(img), dev,
                f"random-program chip {p.rows}x{p.cols}x{p.num_xbars} (variability, stuck "
                f"cells, seed {seed})", None)


def random_vectors(n: int, seed: int, chip: Chip, prefix: str = "random-") -> list[Vector]:
    """Seeded random programs (valid and invalid instructions) on the random chip."""
    progs = _progs_module()
    p = chip.params
    gen = progs.ProgramGen(p, seed)
    whole = [(0, p.dmem_words)]
    out = []
    for i in range(n):
        img, entry = gen.image(chip.devmap)
        runs = [RunSpec(entry, reads=whole)]
        if gen.rng.random() < 0.3:  # run again from 0: IN/ACC/CODE restart cleared
            runs.append(RunSpec(0, reads=whole))
        out.append(Vector(f"{prefix}{i:03d}", "random", chip,
                          Session(img, runs, dmem_zero_to=p.dmem_words),
                          f"random program {i} of seed {seed}, {len(img.program)} words",
                          {"seed": seed, "index": i}))
    return out


# ------------------------------------------------------------------- suite


def suite_vectors(images: int = 2, n_random: int = 24, seed: int = 1,
                  models: Sequence[Path] | None = None, mappings: Sequence[str] = MAPPINGS,
                  nonideal: bool = True, errors: bool = True, streaming: bool = True
                  ) -> tuple[list[Vector], dict[str, Any]]:
    """The standard suite: every example model over every mapping (``images``
    digit images each) on the default chip, with every error case; two
    model/mapping pairs on a non-ideal chip; three on a chip much smaller than
    the models (weight streaming, batches of 4); error cases and ``n_random``
    random programs on the small random-program chip."""
    from ..frontend.datasets import digits_for
    from ..frontend.onnx_import import load_model

    paths = sorted(models if models is not None else EXAMPLES.glob("*.onnx"))
    if not paths:
        raise BadInputError("no example models found", where=str(EXAMPLES))
    vectors: list[Vector] = []
    skipped: list[dict[str, str]] = []
    ideal_chip: Chip | None = None
    nets = {}
    meta_models = []
    for path in paths:
        data = Path(path).read_bytes()
        net = load_model(path)
        x, _ = digits_for(net.input.shape)
        q = quantize_input(net, x[SUITE_IMAGE_START:SUITE_IMAGE_START + images])
        nets[Path(path).stem] = (net, Path(path).name, _sha256(data), q)
        meta_models.append({"name": Path(path).name, "sha256": _sha256(data)})
        vs, sk = model_vectors(net, Path(path).name, _sha256(data), make_config(), q, mappings,
                               skip_uncompilable=True, chip=ideal_chip)
        if vs:
            ideal_chip = vs[0].chip
        vectors += vs
        skipped += sk
    if errors and ideal_chip is not None:
        vectors += error_vectors(ideal_chip, "err-", seed=seed)
    if nonideal:
        cfg = make_config(None, NONIDEAL)
        chip = None
        for stem, mapping in NONIDEAL_CASES:
            if stem not in nets:
                continue
            net, name, sha, q = nets[stem]
            vs, sk = model_vectors(net, name, sha, cfg, q, [mapping], tag="nonideal",
                                   skip_uncompilable=True, chip=chip)
            if vs:
                chip = vs[0].chip
            vectors += vs
            skipped += sk
    if streaming:
        cfg = make_config(None, STREAM)
        chip = None
        for stem, mapping in STREAM_CASES:
            if stem not in nets:
                continue
            net, name, sha, q = nets[stem]
            vs, sk = model_vectors(net, name, sha, cfg, q, [mapping], tag="stream",
                                   skip_uncompilable=True, chip=chip)
            if vs:
                chip = vs[0].chip
            vectors += vs
            skipped += sk
    if errors or n_random:
        rchip = random_chip(seed)
        if errors:
            vectors += error_vectors(rchip, "small-err-", seed=seed)
            vectors += directed_vectors(rchip, seed=seed)
        vectors += random_vectors(n_random, seed, rchip)
    meta = {"kind": "suite", "models": meta_models,
            "inputs": {"source": "scikit-learn digits (cimgen.frontend.datasets, frozen order)",
                       "indices": list(range(SUITE_IMAGE_START, SUITE_IMAGE_START + images))},
            "mappings": list(mappings), "nonideal_config": NONIDEAL,
            "nonideal_cases": [list(c) for c in NONIDEAL_CASES], "stream_config": STREAM,
            "stream_cases": [list(c) for c in STREAM_CASES], "random_programs": n_random,
            "seed": seed, "skipped": skipped}
    return vectors, meta
