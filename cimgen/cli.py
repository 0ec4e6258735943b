"""The ``cimgen`` command line: a thin layer over the library.

Exit codes: 0 success, 1 verification mismatch, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

from golden_model.errors import CimgenError


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .frontend.inspect import describe
    from .frontend.onnx_import import load_model

    print(describe(load_model(args.model)))
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
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
    print(f"{args.model} -> {args.output}: mapping {cfg.mapping}, {rep.xbars_used} crossbar(s) "
          f"of {cfg.rows}x{cfg.cols}, utilization {rep.utilization:.3f}, {rep.phases} phase(s)")
    print(f"  {rep.instructions} instructions, {rep.cycles_per_inference} cycles per inference, "
          f"{rep.reads_per_inference} reads, cell writes: {rep.cell_writes_setup} at setup + "
          f"{rep.cell_writes_per_inference} per inference; {len(man['files'])} files")  # type: ignore[arg-type]
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from golden_model.reference import check_inputs, quantize_input

    from .compiler.artifacts import load_compiled
    from .fileio import check_out_dir, load_npy, save_npy_atomic
    from .run import run_golden

    check_out_dir(args.out)
    comp = load_compiled(args.dir)
    x = load_npy(args.inputs)
    check_inputs(comp.net, x, where=args.inputs)
    q = quantize_input(comp.net, x)
    if args.rtl:
        from .hw.rtl_sim import run_rtl

        res = run_rtl(comp, q)
        logits, cycles = res.outputs, int(res.cycles.max())
        bad = [e for e in res.error if int(e) != 0]
        err = bad[0].name if bad else "NONE"
        extra = f", {float(res.stats.get('cycles_per_s', 0)):.0f} simulated cycles/s"
    else:
        run = run_golden(comp, q)
        logits, cycles, err = run.logits, run.result.cycles, run.result.error.name
        extra = ""
    if err != "NONE":
        print(f"cimgen: error: machine stopped with {err}", file=sys.stderr)
        return 1
    save_npy_atomic(args.out, logits.astype(np.int64))
    print(f"{x.shape[0]} image(s) on the {'RTL' if args.rtl else 'golden machine'}: "
          f"{cycles} cycles per inference{extra} -> {args.out}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 only when every compared execution agrees: machine == reference inference
    (ideal chip) or == the independent non-ideal reference (otherwise), and with --rtl
    also RTL == machine; 1 on any disagreement; 2 on bad input."""
    from golden_model.errors import BadInputError
    from golden_model.reference import forward_int, quantize_input

    from .compiler import calibration_batch, compile_network
    from .frontend.datasets import default_inputs
    from .frontend.onnx_import import load_model
    from .run import compare, expected_logits, run_golden

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
                ("images with another cycle count", str(cyc_bad)),
                ("images with another error code", str(err_bad)),
                ("cycles per inference (RTL)", str(int(res.cycles.max()))),
                ("cycles per inference (golden)", str(gold.result.cycles)),
                ("simulated cycles per second",
                 f"{float(res.stats.get('cycles_per_s', 0)):.0f}")]
        if diff.any():
            i, o = (int(v) for v in np.argwhere(diff)[0])
            rows.append(("first mismatch", f"image {i} output {o}: RTL "
                         f"{int(res.outputs[i, o])}, golden {int(gold.logits[i, o])}"))
        print(f"RTL vs golden machine on {what}, mapping {cfg.mapping}:")
        print("\n".join(f"{k:<32}  {v}" for k, v in rows))
        rtl_ok = not (diff.any() or cyc_bad or err_bad)
    rep = compare(gold.logits, expected, ref, labels, cfg.is_ideal, gold.result.cycles,
                  gold.result.error.name, name)
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
        res = vec.replay(args.dir, args.sim, echo=print, dump=args.dump)
    except vec.SkippedError as e:
        print(f"cimgen: replay {e}", file=sys.stderr)
        return vec.EXIT_SKIPPED
    for g in res.groups:
        if g.summary is None:
            print(f"cimgen: replay: DUT group {g.dut}: no summary line (simulator exit "
                  f"{g.returncode}); log {g.log}", file=sys.stderr)
    print(f"replay ({res.simulator}): {res.passed} passed, {res.failed} failed")
    return vec.EXIT_PASS if res.ok else vec.EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cimgen", description=__doc__.splitlines()[0])
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
    s.set_defaults(func=_cmd_replay)
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
