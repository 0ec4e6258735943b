"""The compile directory: program, chip images, layout and manifest.

Layout of ``cimgen compile ... -o DIR`` (all deterministic, byte for byte):

    model.onnx          the source model (kept for provenance; ``run`` does not read it)
    host.json           the host's stage: input pre-ops, quantizer, level map and shape,
                        output shape and ops (``host``); its arrays are in host.npz
    host.npz            float32 arrays of the host stage (constants, scales, thresholds)
    program.bin         64-bit little-endian instruction words (setup, then inference)
    program.lst         readable listing: address, word, disassembly, comment
    wmem.npy            uint8 [n, cols] crossbar row images programmed by PROG
    dmem_init.npy       int32 initial data memory (thresholds, corrections, pads)
    adc_thr.npy         int64 [tables, 2*rows] ADC thresholds (INT32_MAX = unused)
    adc_recon.npy       int64 [tables, 2*rows+1] ADC output code per bin
    devmap_hrs.npy      int32 [xbars, rows, cols] per-cell HRS current (integer units)
    devmap_lrs.npy      int32 [xbars, rows, cols] per-cell LRS current
    devmap_stuck.npy    int8  [xbars, rows, cols] 0 ok, 1 stuck at LRS, 2 stuck at HRS
    manifest.json       versions, config, seed, layout, sizes, sha256 of every file, report

The directory is written under a temporary name and renamed into place, so a
reader never sees a half-written one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from golden_model import isa
from golden_model.crossbar import DeviceMap
from golden_model.errors import BadInputError
from golden_model.machine import ChipImage

from .. import __version__
from ..config import XbarConfig, make_config
from ..fileio import write_dir_atomic
from .compiled import Compiled, machine_params
from .cost import Report
from .host import HostStage, host_files, load_host
from .layout import Tensor, hwc_order

# 3: host.json / host.npz (the host stage), so running needs no ONNX import.
FORMAT_VERSION = 3
FILES = ("model.onnx", "host.json", "host.npz", "program.bin", "program.lst", "wmem.npy",
         "dmem_init.npy", "adc_thr.npy", "adc_recon.npy", "devmap_hrs.npy", "devmap_lrs.npy",
         "devmap_stuck.npy")


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def listing_text(comp: Compiled) -> str:
    lines = [f"# cimgen {__version__} ISA v{isa.ISA_VERSION}  mapping {comp.cfg.mapping}  "
             f"setup @0  inference @{comp.infer_entry}"]
    for pc, ((ins, comment), word) in enumerate(zip(comp.listing, comp.image.program,
                                                    strict=True)):
        text = isa.disassemble(ins)
        line = f"{pc:06d}  {word:016x}  {text:<72}" + (f"  # {comment}" if comment else "")
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def file_contents(comp: Compiled, model_bytes: bytes) -> dict[str, bytes]:
    img = comp.image
    assert comp.host is not None
    host_doc, host_npz = host_files(comp.host)
    files = {
        "model.onnx": model_bytes,
        "host.json": (json.dumps(host_doc, indent=2, sort_keys=True) + "\n").encode(),
        "host.npz": host_npz,
        "program.bin": isa.to_bytes(list(img.program)),
        "program.lst": listing_text(comp).encode(),
        "wmem.npy": _npy(img.wmem.astype(np.uint8)),
        "dmem_init.npy": _npy(img.dmem_init.astype(np.int32)),
        "adc_thr.npy": _npy(img.adc_thr.astype(np.int64)),
        "adc_recon.npy": _npy(img.adc_recon.astype(np.int64)),
        "devmap_hrs.npy": _npy(img.devmap.hrs.astype(np.int32)),
        "devmap_lrs.npy": _npy(img.devmap.lrs.astype(np.int32)),
        "devmap_stuck.npy": _npy(img.devmap.stuck.astype(np.int8)),
    }
    return files


def manifest(comp: Compiled, files: dict[str, bytes]) -> dict[str, object]:
    return {
        "format_version": FORMAT_VERSION,
        "cimgen_version": __version__,
        "isa_version": isa.ISA_VERSION,
        "config": comp.cfg.to_dict(),
        "seed": comp.cfg.seed,
        "layout": {
            "setup_entry": comp.setup_entry,
            "infer_entry": comp.infer_entry,
            "input": {"base": comp.input.base, "shape": list(comp.input.shape)},
            "output": {"base": comp.output.base, "shape": list(comp.output.shape)},
            "batch": comp.batch,
            "stride": comp.stride,
        },
        "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in sorted(files.items())},
        "report": comp.report.to_dict(),
    }




def save_compiled(comp: Compiled, model_path: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str]) -> dict[str, object]:
    files = file_contents(comp, Path(model_path).read_bytes())
    man = manifest(comp, files)
    files["manifest.json"] = (json.dumps(man, indent=2, sort_keys=True) + "\n").encode()
    write_dir_atomic(out_dir, files)
    return man


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise BadInputError(f"unreadable array ({e})", where=str(path)) from None


def load_compiled(dir_path: str | os.PathLike[str]) -> Compiled:
    """Read a compile directory, checking every file against the manifest."""
    d = Path(dir_path)
    if not d.is_dir():
        raise BadInputError("no such compile directory", where=str(d))
    mpath = d / "manifest.json"
    if not mpath.is_file():
        raise BadInputError("manifest.json is missing: not a cimgen compile directory",
                            where=str(d))
    try:
        man = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"manifest is not valid JSON ({e})", where=str(mpath)) from None
    if not isinstance(man, dict):
        raise BadInputError("manifest is not a JSON object", where=str(mpath))
    if man.get("format_version") != FORMAT_VERSION:
        raise BadInputError(f"format_version {man.get('format_version')} is not "
                            f"{FORMAT_VERSION}", where=str(mpath))
    if man.get("isa_version") != isa.ISA_VERSION:
        raise BadInputError(f"compiled for ISA v{man.get('isa_version')}, this cimgen speaks "
                            f"v{isa.ISA_VERSION}", where=str(mpath))
    try:
        listed = man["files"]
        expected = set(FILES)
        if not isinstance(listed, dict) or set(listed) != expected:
            got = set(listed) if isinstance(listed, dict) else set()
            diff = sorted(expected ^ got)
            raise BadInputError(f"manifest must list exactly the compile files (differs in: "
                                f"{', '.join(diff)})", where=str(mpath))
        for name, meta in sorted(listed.items()):
            f = d / name
            if not f.is_file():
                raise BadInputError("file listed in the manifest is missing", where=str(f))
            if hashlib.sha256(f.read_bytes()).hexdigest() != meta["sha256"]:
                raise BadInputError("sha256 differs from the manifest (file modified?)",
                                    where=str(f))
        cfg = make_config(None, man["config"])
        lay = man["layout"]
        ishape = tuple(int(v) for v in lay["input"]["shape"])
        oshape = tuple(int(v) for v in lay["output"]["shape"])
        ibase, obase = int(lay["input"]["base"]), int(lay["output"]["base"])
        batch, stride = int(lay["batch"]), int(lay["stride"])
        setup_entry, infer_entry = int(lay["setup_entry"]), int(lay["infer_entry"])
        report = Report(**man["report"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadInputError(f"malformed manifest ({type(e).__name__}: {e})",
                            where=str(mpath)) from None
    try:
        host_doc = json.loads((d / "host.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"not valid JSON ({e})", where=str(d / "host.json")) from None
    if not isinstance(host_doc, dict):
        raise BadInputError("not a JSON object", where=str(d / "host.json"))
    host = load_host(host_doc, (d / "host.npz").read_bytes(), str(d / "host.json"))
    words = isa.from_bytes((d / "program.bin").read_bytes())
    dev = DeviceMap(_load_npy(d / "devmap_hrs.npy"), _load_npy(d / "devmap_lrs.npy"),
                    _load_npy(d / "devmap_stuck.npy"))
    image = ChipImage(machine_params(cfg), tuple(words), _load_npy(d / "wmem.npy"),
                      _load_npy(d / "dmem_init.npy"), _load_npy(d / "adc_thr.npy"),
                      _load_npy(d / "adc_recon.npy"), dev)
    _check_consistent(cfg, report, image, host, ishape, oshape, ibase, obase, setup_entry,
                      infer_entry, batch, stride, str(mpath))
    listing = []
    for w in words:
        ins = isa.decode(w)
        listing.append((ins if ins is not None else isa.make("NOP"), ""))
    return Compiled(cfg, None, image, setup_entry, infer_entry,
                    Tensor(ibase, ishape, hwc_order(ishape)),
                    Tensor(obase, oshape, hwc_order(oshape)), listing, report, batch=batch,
                    stride=stride, host=host)


def _check_consistent(cfg: XbarConfig, report: Report, image: ChipImage, host: HostStage,
                      ishape: tuple[int, ...], oshape: tuple[int, ...], ibase: int, obase: int,
                      setup_entry: int, infer_entry: int, batch: int, stride: int, where: str
                      ) -> None:
    """The manifest's config and layout must describe the files it lists."""
    def bad(msg: str) -> BadInputError:
        return BadInputError(f"manifest does not match the compiled files: {msg}", where=where)

    xb = (cfg.num_xbars, cfg.rows, cfg.cols)
    dev = image.devmap
    for name, arr in (("devmap_hrs", dev.hrs), ("devmap_lrs", dev.lrs),
                      ("devmap_stuck", dev.stuck)):
        if arr.shape != xb:
            raise bad(f"{name} has shape {arr.shape}, config says {xb}")
    if report.mapping != cfg.mapping:
        raise bad(f"report mapping {report.mapping} != config mapping {cfg.mapping}")
    if image.wmem.ndim != 2 or image.wmem.shape[1] != cfg.cols or \
            image.wmem.shape[0] > cfg.wmem_words:
        raise bad(f"wmem shape {image.wmem.shape} vs cols {cfg.cols}, wmem_words "
                  f"{cfg.wmem_words}")
    n_tables = image.adc_thr.shape[0] if image.adc_thr.ndim == 2 else -1
    if image.adc_thr.shape != (n_tables, 2 * cfg.rows) or \
            image.adc_recon.shape != (n_tables, 2 * cfg.rows + 1) or n_tables > cfg.adc_tables:
        raise bad(f"ADC tables {image.adc_thr.shape}/{image.adc_recon.shape} vs rows "
                  f"{cfg.rows}, adc_tables {cfg.adc_tables}")
    if image.dmem_init.ndim != 1 or image.dmem_init.size > cfg.dmem_words:
        raise bad(f"dmem_init has {image.dmem_init.size} words, dmem_words {cfg.dmem_words}")
    n = len(image.program)
    if n > cfg.prog_words or not (0 <= setup_entry < n and 0 <= infer_entry < n):
        raise bad(f"entries {setup_entry}/{infer_entry} outside the {n}-word program")
    if ishape != tuple(host.input.shape):
        raise bad(f"input shape {list(ishape)} != host stage input {list(host.input.shape)}")
    if oshape != host.output_shape:
        raise bad(f"output shape {list(oshape)} != host stage output "
                  f"{list(host.output_shape)}")
    if batch < 1 or batch != report.batch or (batch > 1 and stride < 1):
        raise bad(f"batch {batch} / stride {stride} (report batch {report.batch})")
    for what, base, shape in (("input", ibase, ishape), ("output", obase, oshape)):
        size = int(np.prod(shape))
        end = base + (batch - 1) * stride + size
        if not 0 <= base <= end <= cfg.dmem_words:
            raise bad(f"{what} of {batch} slot(s) at DMEM[{base}..{end}) outside dmem_words "
                      f"{cfg.dmem_words}")
