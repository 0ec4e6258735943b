"""The sweep engine: evaluate points in-process, in a process pool or on Dask.

A *point* is one combination of swept values; it is evaluated for every seed
(compile with that seed's device map, run the golden machine on all images)
and yields one CSV row per seed. A point is the unit of work, of crash safety
(its rows are appended and flushed together) and of ``--resume``.

Determinism: a row depends only on (point, seed): device maps and read noise
are drawn from counter-based generators keyed by the seed, the calibration
batch is fixed, and the machine computes on integers. The CSV is appended in
completion order while running and rewritten in point order at the end, so 1
job, N jobs and Dask give byte-identical files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from golden_model.errors import BadInputError, MismatchError
from golden_model.isa import Err
from golden_model.machine import Machine, RunResult
from golden_model.reference import predict

from ..compiler import Compiled, compile_network
from ..fileio import write_bytes_atomic
from .report import write_reports
from .results import SweepResult
from .spec import Context, Sweep, build_context, needs_calib, point_label

RESULT_COLUMNS = ("seed", "images", "accuracy", "agreement", "cycles_per_inference",
                  "cell_writes_setup", "cell_writes_per_inference", "batch",
                  "energy_pj_per_inference", "latency_ns_per_inference", "edp_pj_ns")
CSV_NAME = "results.csv"
SIGNATURE_NAME = "sweep.json"

Row = list[str]
Results = Generator[tuple[int, list[Row]], None, None]


def header(keys: tuple[str, ...]) -> list[str]:
    return ["point", *keys, *RESULT_COLUMNS]


def fmt(v: object) -> str:
    """CSV text of a config value: shortest round-trip repr for floats."""
    return repr(v) if isinstance(v, float) else str(v)


# ----------------------------------------------------------------- worker


def run_machine(comp: Compiled, q: np.ndarray, chunk: int = 64
                ) -> tuple[np.ndarray, RunResult]:
    """Logits of every image, about ``chunk`` images per machine pass (a whole number
    of batches; the result does not depend on ``chunk``: read noise is keyed by
    the absolute run index)."""
    out = []
    res = None
    step = max(1, chunk // comp.batch) * comp.batch
    for s in range(0, q.shape[0], step):
        qb = q[s:s + step]
        mach = Machine(comp.image, comp.runs(qb.shape[0]), image_offset=s // comp.batch)
        setup = mach.run(comp.setup_entry)
        if setup.error != Err.NONE:
            return np.zeros((0,)), setup
        comp.load_inputs(mach, qb)
        res = mach.run(comp.infer_entry)
        if res.error != Err.NONE:
            return np.zeros((0,)), res
        out.append(comp.output_logits(mach.dmem, qb.shape[0]))
    assert res is not None
    return np.concatenate(out), res


def evaluate_point(ctx: Context, index: int) -> list[Row]:
    """CSV rows (one per seed) of point ``index``."""
    rows = []
    for seed, cfg in zip(ctx.seeds, ctx.configs[index], strict=True):
        calib = ctx.calib_q[: cfg.calib_images] if needs_calib(cfg) else None
        comp = compile_network(ctx.net, cfg, calib)
        logits, res = run_machine(comp, ctx.q, ctx.chunk)
        if res.error != Err.NONE:
            raise MismatchError(f"point {index} seed {seed}: the machine stopped with "
                                f"{res.error.name} at pc {res.fault_pc}", where="dse")
        pred = predict(ctx.net, logits)
        n = int(pred.shape[0])
        rep = comp.report
        rows.append([str(index), *(fmt(getattr(cfg, k)) for k in ctx.keys), str(seed), str(n),
                     f"{(pred == ctx.labels).mean():.6f}", f"{(pred == ctx.ref_pred).mean():.6f}",
                     fmt(res.cycles / comp.batch), str(rep.cell_writes_setup),
                     fmt(rep.cell_writes_per_inference), str(comp.batch),
                     fmt(rep.energy_pj_per_inference), fmt(rep.latency_ns_per_inference),
                     fmt(rep.edp_pj_ns)])
    return rows


_CTX: Context | None = None


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """The machine's matmuls are tiny: BLAS threads only contend (measured 9x slower
    with OpenBLAS threads on a loaded 2-core machine). Parallelism is across points."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _init_worker(ctx: Context) -> None:
    global _CTX
    _CTX = ctx
    one_blas_thread()  # for the worker's lifetime


def _pool_task(index: int) -> tuple[int, list[Row]]:
    assert _CTX is not None
    return index, evaluate_point(_CTX, index)


def _dask_task(ctx: Context, index: int) -> tuple[int, list[Row]]:
    return index, evaluate_point(ctx, index)


# --------------------------------------------------------------- executors


def _serial(ctx: Context, todo: list[int]) -> Results:
    with one_blas_thread():
        for i in todo:
            yield i, evaluate_point(ctx, i)


def _pool(ctx: Context, todo: list[int], jobs: int) -> Results:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ex = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(ctx,))
    try:
        pending = {ex.submit(_pool_task, i) for i in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def connect_dask(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise BadInputError("--dask needs the 'distributed' package (pip install "
                            "'cimgen[dse]')", where="dse") from None
    try:
        return Client(address, timeout="15s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise BadInputError(f"cannot connect to the Dask scheduler at '{address}' "
                            f"({type(e).__name__}: {e})", where="--dask") from None


def _dask(ctx: Context, todo: list[int], client: Any) -> Results:
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    ctx_f = client.scatter(ctx, broadcast=True, hash=False)
    futs = [client.submit(_dask_task, ctx_f, i, pure=False, key=f"cimgen-dse-{run}-{i}")
            for i in todo]
    try:
        for f in as_completed(futs, loop=client.loop):
            yield f.result()
    finally:
        client.cancel(futs)


# ------------------------------------------------------------- results dir


def _csv_text(head: list[str], rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    w.writerows(rows)
    return buf.getvalue()


def _load_done(path: Path, sw: Sweep, head: list[str]) -> dict[int, list[Row]]:
    """Complete points of an earlier run (all seeds present and consistent)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if not lines:
        return {}
    if next(csv.reader([lines[0]])) != head:
        raise BadInputError("its header does not match this sweep's keys: not the same "
                            "sweep (use another -o)", where=os.fspath(path))
    if not text.endswith("\n"):
        lines = lines[:-1]  # a row cut short by a crash
    pts = sw.points()
    seeds = [str(s) for s in sw.seeds]
    by_point: dict[int, dict[str, Row]] = {}
    for row in csv.reader(lines[1:]):
        if len(row) != len(head) or not row[0].isdigit():
            continue
        i = int(row[0])
        if i >= len(pts) or row[1:1 + len(sw.keys)] != [fmt(v) for v in
                                                        _point_values(sw, i)]:
            continue
        by_point.setdefault(i, {})[row[1 + len(sw.keys)]] = row
    return {i: [rs[s] for s in seeds] for i, rs in by_point.items()
            if sorted(rs) == sorted(seeds)}


def _point_values(sw: Sweep, i: int) -> list[object]:
    cfg = sw.configs[i][0]
    return [getattr(cfg, k) for k in sw.keys]


ProgressFn = Callable[[int, int, int, list[Row]], None]


def run_sweep(sw: Sweep, out_dir: str | os.PathLike[str], jobs: int = 1,
              dask: str | None = None, resume: bool = False,
              progress: ProgressFn | None = None, chunk: int = 64) -> SweepResult:
    """Run (or resume) a sweep into ``out_dir``: results.csv, summary.md, plots."""
    t0 = time.perf_counter()
    if jobs < 1:
        raise BadInputError(f"--jobs must be >= 1, got {jobs}", where="dse")
    ctx = build_context(sw)
    ctx.chunk = chunk
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError("exists and is not a folder", where=os.fspath(out))
    if not out.parent.is_dir():
        raise BadInputError(f"output folder's parent '{out.parent}' does not exist",
                            where=os.fspath(out))
    csv_path = out / CSV_NAME
    sig_path = out / SIGNATURE_NAME
    head = header(sw.keys)
    sig = sw.signature()
    done: dict[int, list[Row]] = {}
    if csv_path.exists() and not resume:
        raise BadInputError(f"{CSV_NAME} exists: pass --resume to continue that sweep, or "
                            "choose another -o", where=os.fspath(out))
    if resume and csv_path.exists():
        if sig_path.exists():
            try:
                old = json.loads(sig_path.read_text())
            except (OSError, ValueError):
                old = None
            if old != json.loads(json.dumps(sig)):
                diff = _first_difference(old, sig)
                raise BadInputError(f"--resume: the results there come from a different sweep "
                                    f"({diff} differs); use another -o", where=os.fspath(out))
        done = _load_done(csv_path, sw, head)
    client = connect_dask(dask) if dask else None
    try:
        out.mkdir(exist_ok=True)
        write_bytes_atomic(sig_path, (json.dumps(sig, indent=1) + "\n").encode())
        # Start from the complete points only (a partial point is recomputed).
        write_bytes_atomic(csv_path, _csv_text(head, [r for i in sorted(done)
                                                      for r in done[i]]).encode())
        todo = [i for i in range(sw.n_points) if i not in done]
        if client is not None:
            it = _dask(ctx, todo, client)
        elif jobs > 1 and len(todo) > 1:
            it = _pool(ctx, todo, min(jobs, len(todo)))
        else:
            it = _serial(ctx, todo)
        results = dict(done)
        t_run = time.perf_counter()
        try:
            with open(csv_path, "a", encoding="utf-8", newline="") as f:
                for k, (i, rows) in enumerate(it, 1):
                    _append(f, rows)
                    results[i] = rows
                    if progress is not None:
                        progress(k, len(todo), i, rows)
        finally:
            it.close()  # stop the pool / cancel Dask futures now, also on errors
        seconds = time.perf_counter() - t_run
    finally:
        if client is not None:
            client.close()
    ordered = [r for i in sorted(results) for r in results[i]]
    write_bytes_atomic(csv_path, _csv_text(head, ordered).encode())
    dict_rows = [dict(zip(head, r, strict=True)) for r in ordered]
    res = SweepResult(out_dir=out, csv_path=csv_path, rows=dict_rows, points_run=len(todo),
                      points_resumed=len(done), seconds=seconds, images=int(ctx.q.shape[0]),
                      ideal_accuracy=ctx.ideal_accuracy, files=[csv_path],
                      seeds=len(sw.seeds))
    res.files += write_reports(sw, res)
    res.seconds_total = time.perf_counter() - t0
    return res


def _append(f: TextIO, rows: list[Row]) -> None:
    w = csv.writer(f, lineterminator="\n")
    w.writerows(rows)
    f.flush()
    os.fsync(f.fileno())


def _first_difference(old: object, new: dict[str, object]) -> str:
    if not isinstance(old, dict):
        return SIGNATURE_NAME
    for k, v in new.items():
        if json.loads(json.dumps(v)) != old.get(k):
            return k
    return SIGNATURE_NAME


# ---------------------------------------------------------------- progress


class Progress:
    """A bar on a terminal, one plain line per finished point otherwise."""

    def __init__(self, sw: Sweep, stream: TextIO | None = None, tty: bool | None = None):
        self.sw = sw
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0 = time.perf_counter()
        self.points = sw.points()

    def __call__(self, k: int, total: int, index: int, rows: list[Row]) -> None:
        el = time.perf_counter() - self.t0
        col = header(self.sw.keys).index("accuracy")
        acc = [float(r[col]) for r in rows]
        if self.tty:
            width = 30
            fill = int(width * k / max(total, 1))
            eta = el / k * (total - k)
            self.stream.write(f"\rdse [{'#' * fill}{'.' * (width - fill)}] {k}/{total} points"
                              f"  {el:5.0f} s  eta {eta:4.0f} s ")
            if k == total:
                self.stream.write("\n")
        else:
            lab = point_label(self.sw.keys, self.points[index])
            self.stream.write(f"dse: [{k}/{total}] point {index} ({lab}): accuracy "
                              f"{np.mean(acc):.4f} (min {min(acc):.4f}, max {max(acc):.4f}), "
                              f"{el:.1f} s\n")
        self.stream.flush()
