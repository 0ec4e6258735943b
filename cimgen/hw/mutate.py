"""Mutation testing of the RTL: how many single-point bugs does a test subset catch?

Mutants are enumerated from pyslang's syntax tree of every hand-written
``rtl/*.sv`` file (a file whose header says GENERATED is skipped: it is
checked against its generator instead). Each mutant is one textual edit at
one syntax node:

* ``op``: a binary operator swapped for a plausible wrong one (+/-, &/|,
  &&/||, ==/!=, </<=, >/>=, <</>>, ...);
* ``const``: an integer literal plus or minus one (size and base kept);
* ``invert``: an ``if`` or ``?:`` condition negated;
* ``enable``: an ``if`` in an ``always_ff`` made unconditional (a dropped
  enable);
* ``else``: an ``else`` branch dropped;
* ``not``: a ``!``/``~`` dropped;
* ``stuck``: the right-hand side of a continuous assignment stuck at all
  zeros or all ones.

Parameter defaults of module headers are not mutated (every instance sets
them), nor are declaration widths or elaboration-time ``$error`` checks.

Each selected mutant is built in its own copy of ``rtl/`` and its own build
directory (``CIMGEN_RTL_DIR``/``CIMGEN_RTL_BUILD``), so the shared build cache
is never touched, and a named pytest subset runs on it under a wall-clock
budget. Outcomes:

* ``killed``: the subset failed (an assertion, the scoreboard, a testbench
  check or the testbench's own hang watchdog; ``caught_by`` says which);
* ``survived``: the subset passed;
* ``timeout``: the budget ran out before the subset finished (a hang the
  testbench did not catch): counted as not killed;
* ``invalid``: the mutant does not elaborate (Verilator lint errors): not a
  mutant of a working design, left out of the score.

:func:`run` writes a JSON summary after every mutant (resumable).
"""

from __future__ import annotations

import concurrent.futures
import difflib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from golden_model.errors import BadInputError

from . import rtl_sim

#: Named test subsets (pytest node ids, relative to the repository root).
SUBSETS: dict[str, tuple[str, ...]] = {
    # Two small Verilator builds: seeded random programs with loops and
    # faults, the register map, AXI backpressure, directed boundary programs
    # and window bounds, the assertion tests' legal driver; and the static
    # pyslang checks of the packages (strides at many sizes).
    "fast": ("cocotb_tests/test_rtl_random.py::test_random_programs",
             "cocotb_tests/test_rtl_small.py",
             "cocotb_tests/test_rtl_assertions.py::test_legal_raw_master_passes",
             "tests/test_rtl_pyslang.py"),
    # Every RTL test CI runs (several builds; about 10 minutes per mutant here).
    "ci": ("cocotb_tests",),
}
KINDS = ("op", "const", "invert", "enable", "else", "not", "stuck")

# Operator swaps: each operator's wrong alternatives.
_SWAPS: dict[str, tuple[str, ...]] = {
    "+": ("-",), "-": ("+",), "*": ("+",), "/": ("*",), "%": ("/",),
    "&": ("|",), "|": ("&",), "^": ("|",),
    "&&": ("||",), "||": ("&&",),
    "==": ("!=",), "!=": ("==",),
    "<": ("<=",), "<=": (">",), ">": (">=",), ">=": (">",),
    "<<": (">>",), ">>": ("<<",), ">>>": (">>",), "<<<": ("<<",),
}
_GENERATED = re.compile(r"\bGENERATED\b")


@dataclass(frozen=True)
class Mutant:
    """One single-point edit of one RTL file."""

    file: str  # file name inside the RTL folder
    line: int
    kind: str
    start: int  # byte offsets of the replaced text
    end: int
    original: str
    replacement: str

    @property
    def id(self) -> str:
        h = hashlib.sha1(f"{self.file}:{self.start}:{self.end}:{self.replacement}".encode())
        return f"{Path(self.file).stem}:{self.line}:{self.kind}:{h.hexdigest()[:6]}"

    def apply(self, text: str) -> str:
        if text[self.start:self.end] != self.original:
            raise BadInputError(f"mutant {self.id} does not match the source (file changed?)",
                                where=self.file)
        return text[:self.start] + self.replacement + text[self.end:]

    def diff(self, text: str) -> str:
        return "".join(difflib.unified_diff(
            text.splitlines(keepends=True), self.apply(text).splitlines(keepends=True),
            f"a/rtl/{self.file}", f"b/rtl/{self.file}", n=1))

    def describe(self) -> str:
        return f"{self.file}:{self.line} {self.kind}: `{self.original}` -> `{self.replacement}`"


# ---------------------------------------------------------------- enumeration


def rtl_files(rtl_dir: Path) -> list[Path]:
    """Hand-written RTL files: ``*.sv`` in the folder, generated ones skipped."""
    out = []
    for p in sorted(rtl_dir.glob("*.sv")):
        head = "\n".join(p.read_text(errors="replace").splitlines()[:8])
        if not _GENERATED.search(head):
            out.append(p)
    return out


def _int_literal_variants(size: str, base: str, digits: str) -> list[str]:
    """``size'base digits`` plus and minus one, within the size."""
    b = base.lower().lstrip("'").lstrip("s")
    radix = {"d": 10, "h": 16, "b": 2, "o": 8}.get(b)
    clean = digits.replace("_", "")
    if radix is None or not clean or any(c in "xXzZ?" for c in clean):
        return []
    value = int(clean, radix)
    width = int(size) if size else 32
    fmt = {10: "d", 16: "x", 2: "b", 8: "o"}[radix]
    out = []
    for v in (value + 1, value - 1):
        if 0 <= v < (1 << width):
            out.append(f"{size}{base}{format(v, fmt)}")
    return out


def enumerate_file(path: Path, name: str | None = None) -> list[Mutant]:
    """Every mutant of one file, in source order."""
    from pyslang import syntax

    K = syntax.SyntaxKind
    text = path.read_text()
    raw = text.encode()
    name = name or path.name
    tree = syntax.SyntaxTree.fromText(text, name)
    out: list[Mutant] = []
    seen: set[tuple[int, int, str]] = set()

    def line_of(offset: int) -> int:
        return raw.count(b"\n", 0, offset) + 1

    def add(kind: str, start: int, end: int, repl: str) -> None:
        # pyslang offsets are bytes; the RTL is ASCII, so they are characters too.
        orig = raw[start:end].decode()
        if orig == repl or (start, end, repl) in seen:
            return
        seen.add((start, end, repl))
        out.append(Mutant(name, line_of(start), kind, start, end, orig, repl))

    def rng(node: Any) -> tuple[int, int]:
        r = node.sourceRange
        return int(r.start.offset), int(r.end.offset)

    skip_ancestors = {K.ParameterPortList, K.VariableDimension, K.ParameterDeclaration,
                      K.TypeParameterDeclaration, K.ElementSelect, K.AttributeInstance}

    def excluded(node: Any) -> bool:
        p = node.parent
        while p is not None:
            if p.kind in skip_ancestors:
                # Package localparams (register offsets, constants) are behaviour.
                return not (p.kind == K.ParameterDeclaration and _in_package(p))
            if p.kind in (K.DataDeclaration, K.PortDeclaration, K.ImplicitAnsiPort) \
                    and node.kind in (K.IntegerLiteralExpression, K.IntegerVectorExpression):
                return True  # declaration widths
            if p.kind == K.IfGenerate and "$error" in str(p):
                return True  # elaboration-time parameter checks
            p = p.parent
        return False

    def _in_package(node: Any) -> bool:
        p = node.parent
        while p is not None:
            if p.kind == K.PackageDeclaration:
                return True
            p = p.parent
        return False

    def in_always_ff(node: Any) -> bool:
        p = node.parent
        while p is not None:
            if p.kind == K.AlwaysFFBlock:
                return True
            p = p.parent
        return False

    def visit(node: Any) -> bool:
        if not isinstance(node, syntax.SyntaxNode) or excluded(node):
            return True
        k = node.kind
        if hasattr(node, "operatorToken") and hasattr(node, "left") and hasattr(node, "right"):
            tok = node.operatorToken
            op = tok.rawText
            if k not in (K.AssignmentExpression, K.NonblockingAssignmentExpression):
                for alt in _SWAPS.get(op, ()):
                    add("op", int(tok.range.start.offset), int(tok.range.end.offset), alt)
        elif k == K.IntegerVectorExpression:
            s, e = rng(node)
            size = node.size.rawText if node.size is not None else ""
            for v in _int_literal_variants(size, node.base.rawText, node.value.rawText):
                add("const", s, e, v)
        elif k == K.IntegerLiteralExpression:
            tok = node.literal
            t = tok.rawText.replace("_", "")
            if t.isdigit():
                v = int(t)
                for alt in (v + 1, v - 1):
                    if alt >= 0:
                        add("const", int(tok.range.start.offset), int(tok.range.end.offset),
                            str(alt))
        elif k == K.ConditionalStatement:
            ps, pe = rng(node.predicate)
            pred = raw[ps:pe].decode()
            add("invert", ps, pe, f"!({pred})")
            is_reset = "rst_ni" in pred
            if node.elseClause is not None and not is_reset:
                # (The else of a reset branch holds a whole register block.)
                es, ee = rng(node.elseClause)
                add("else", es, ee, "")
            elif node.elseClause is None and in_always_ff(node) \
                    and not node.uniqueOrPriority:
                add("enable", ps, pe, "1'b1")
        elif k == K.ConditionalExpression:
            ps, pe = rng(node.predicate)
            add("invert", ps, pe, f"!({raw[ps:pe].decode()})")
        elif k in (K.UnaryLogicalNotExpression, K.UnaryBitwiseNotExpression):
            s, _ = rng(node)
            tok = node.operatorToken
            add("not", int(tok.range.start.offset), int(tok.range.end.offset), "")
            del s
        elif k == K.ContinuousAssign:
            for a in node.assignments:
                rs, re_ = rng(a.right)
                add("stuck", rs, re_, "'0")
                add("stuck", rs, re_, "'1")
        return True

    tree.root.visit(visit)
    out.sort(key=lambda m: (m.start, m.end, m.replacement))
    return out


def enumerate_all(rtl_dir: Path) -> list[Mutant]:
    return [m for p in rtl_files(rtl_dir) for m in enumerate_file(p)]


def select(mutants: Sequence[Mutant], count: int, seed: int, min_per_file: int = 6
           ) -> list[Mutant]:
    """A deterministic sample of ``count`` mutants: every file gets at least
    ``min_per_file`` (or all it has), the rest in proportion to each file's
    mutants; within a file, kinds take turns, each kind's order fixed by
    hashing (seed, mutant id), so adding a mutant elsewhere does not reshuffle."""
    by_file: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_file.setdefault(m.file, []).append(m)
    if not by_file or count <= 0:
        return []
    total = len(mutants)
    quota = {f: min(len(ms), max(min_per_file, round(count * len(ms) / total)))
             for f, ms in by_file.items()}
    # Trim the largest quotas (never below the minimum) until the sum fits.
    while sum(quota.values()) > count:
        f = max(quota, key=lambda x: (quota[x] - min(min_per_file, len(by_file[x])), x))
        if quota[f] <= min(min_per_file, len(by_file[f])):
            break
        quota[f] -= 1

    def key(m: Mutant) -> str:
        return hashlib.sha1(f"{seed}:{m.id}".encode()).hexdigest()

    chosen: list[Mutant] = []
    for f in sorted(by_file):
        kinds: dict[str, list[Mutant]] = {}
        for m in sorted(by_file[f], key=key):
            kinds.setdefault(m.kind, []).append(m)
        order = sorted(kinds, key=lambda k: hashlib.sha1(f"{seed}:{f}:{k}".encode()).hexdigest())
        picked: list[Mutant] = []
        while len(picked) < quota[f]:
            for k in order:
                if kinds[k] and len(picked) < quota[f]:
                    picked.append(kinds[k].pop(0))
        chosen += picked
    return sorted(chosen, key=lambda m: (m.file, m.start, m.replacement))


# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    id: str
    file: str
    line: int
    kind: str
    original: str
    replacement: str
    status: str  # killed | survived | timeout | invalid
    caught_by: str = ""  # assertion | scoreboard | watchdog | test
    detail: str = ""
    seconds: float = 0.0
    diff: str = ""


@dataclass
class Config:
    root: Path  # repository root (tests are run from here)
    rtl_dir: Path
    tests: tuple[str, ...]
    subset: str = "fast"
    jobs: int = 2
    budget_s: float = 900.0
    work_dir: Path | None = None  # per-mutant copies (default: a temp folder)
    keep: bool = False  # keep each mutant's folder
    env: dict[str, str] = field(default_factory=dict)


def _lint_errors(rtl_dir: Path) -> str:
    """Verilator's errors (not warnings) on an RTL folder, '' when it elaborates."""
    rtl_sim.setup_verilator()
    files = [rtl_dir / s for s in rtl_sim.RTL_SOURCES]
    files += sorted((rtl_dir / rtl_sim.SVA_SUBDIR).glob("*.sv"))
    cmd = ["verilator", "--lint-only", "--assert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
           "--top-module", rtl_sim.TOPLEVEL, *map(str, files)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if r.returncode == 0:
        return ""
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("%Error")]
    return errs[0] if errs else r.stderr.strip()[-300:]


_FAILED = re.compile(r"^FAILED (\S+)(?: - (.*))?$", re.M)


def _classify(output: str) -> tuple[str, str]:
    """(caught_by, detail) of a failed subset run."""
    m = _FAILED.search(output)
    detail = ""
    if m:
        detail = m.group(1) + (f" - {m.group(2)}" if m.group(2) else "")
    fired = re.search(r"assertion failed: ([^\n;]+)", output)
    if fired:
        return "assertion", fired.group(1).strip()[:300]
    if "hang" in output and ("did not finish" in output or "no response" in output):
        return "watchdog", detail[:300]
    if "RTL != golden machine" in output:
        return "scoreboard", detail[:300]
    return "test", detail[:300]


def _run_subset(cfg: Config, rtl: Path, build: Path, log: Path) -> tuple[str, str, str]:
    """Run the subset on one RTL copy: (status, caught_by, detail)."""
    env = {**os.environ, **cfg.env, "CIMGEN_RTL_DIR": str(rtl), "CIMGEN_RTL_BUILD": str(build),
           "PYTHONPATH": str(cfg.root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=", "-m", "not slow", *cfg.tests]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cfg.root, env=env, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=cfg.budget_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timeout", "", f"no verdict within the {cfg.budget_s:.0f} s budget"
    out = log.read_text(errors="replace")
    if rc == 0:
        return "survived", "", ""
    if rc in (2, 3, 4, 5):  # pytest usage/internal errors, nothing collected
        raise RuntimeError(f"the test subset did not run (pytest exit {rc}); log {log}")
    by, detail = _classify(out)
    return "killed", by, detail


def _prepare(cfg: Config, base: Path, m: Mutant | None) -> tuple[Path, Path]:
    rtl = base / "rtl"
    shutil.copytree(cfg.rtl_dir, rtl, ignore=shutil.ignore_patterns("*.orig", "*~"))
    if m is not None:
        p = rtl / m.file
        p.write_text(m.apply(p.read_text()))
    return rtl, base / "build"


def run_one(cfg: Config, m: Mutant) -> Outcome:
    t0 = time.time()
    src = (cfg.rtl_dir / m.file).read_text()
    base = Path(tempfile.mkdtemp(prefix=f"mut-{m.id.replace(':', '-')}-",
                                 dir=cfg.work_dir))
    try:
        rtl, build = _prepare(cfg, base, m)
        err = _lint_errors(rtl)
        if err:
            status, by, detail = "invalid", "", err[:300]
        else:
            status, by, detail = _run_subset(cfg, rtl, build, base / "pytest.log")
    finally:
        if not cfg.keep:
            shutil.rmtree(base, ignore_errors=True)
    return Outcome(m.id, m.file, m.line, m.kind, m.original, m.replacement, status, by, detail,
                   round(time.time() - t0, 1), m.diff(src) if status != "killed" else "")


def baseline(cfg: Config) -> float:
    """Run the subset on the unmutated RTL (it must pass); returns its seconds."""
    t0 = time.time()
    base = Path(tempfile.mkdtemp(prefix="mut-baseline-", dir=cfg.work_dir))
    try:
        rtl, build = _prepare(cfg, base, None)
        status, _, detail = _run_subset(cfg, rtl, build, base / "pytest.log")
        if status != "survived":
            tail = (base / "pytest.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the test subset fails on the unmutated RTL ({status}: "
                               f"{detail}):\n{tail}")
    finally:
        if not cfg.keep:
            shutil.rmtree(base, ignore_errors=True)
    return round(time.time() - t0, 1)


def score(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    outs = list(outcomes)
    counts = {s: sum(1 for o in outs if o.status == s)
              for s in ("killed", "survived", "timeout", "invalid")}
    valid = counts["killed"] + counts["survived"] + counts["timeout"]
    by: dict[str, int] = {}
    for o in outs:
        if o.status == "killed":
            by[o.caught_by] = by.get(o.caught_by, 0) + 1
    per_file: dict[str, dict[str, int]] = {}
    for o in outs:
        f = per_file.setdefault(o.file, {"killed": 0, "survived": 0, "timeout": 0, "invalid": 0})
        f[o.status] += 1
    return {"counts": counts, "valid": valid, "caught_by": dict(sorted(by.items())),
            "score": round(counts["killed"] / valid, 4) if valid else None,
            "per_file": dict(sorted(per_file.items()))}


def write_summary(path: Path, meta: dict[str, Any], outcomes: Sequence[Outcome]) -> None:
    outs = sorted(outcomes, key=lambda o: (o.file, o.line, o.id))
    doc = {**meta, **score(outs), "mutants": [asdict(o) for o in outs]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def load_outcomes(path: Path) -> list[Outcome]:
    try:
        doc = json.loads(path.read_text())
        return [Outcome(**m) for m in doc.get("mutants", [])]
    except (OSError, ValueError, TypeError) as e:
        raise BadInputError(f"cannot resume from it ({e})", where=str(path)) from None


def run(cfg: Config, mutants: Sequence[Mutant], out: Path, meta: dict[str, Any], *,
        resume: bool = False, log: Callable[[str], None] | None = None) -> list[Outcome]:
    """Run every mutant (``cfg.jobs`` at a time); the summary is rewritten
    after each one, so an interrupted run resumes with ``resume=True``."""
    say = log or (lambda s: print(s, file=sys.stderr))
    done: dict[str, Outcome] = {}
    if resume and out.is_file():
        # Killed and invalid mutants stay; survivors and timeouts run again
        # (the tests may have changed since).
        done = {o.id: o for o in load_outcomes(out) if o.status in ("killed", "invalid")}
    todo = [m for m in mutants if m.id not in done]
    wanted = {m.id for m in mutants}
    results = [o for i, o in done.items() if i in wanted]
    lock = threading.Lock()
    t0 = time.time()
    say(f"mutate: {len(todo)} mutant(s) to run ({len(results)} resumed), {cfg.jobs} at a time, "
        f"budget {cfg.budget_s:.0f} s each")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
        futs = {pool.submit(run_one, cfg, m): m for m in todo}
        for n, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            m = futs[fut]
            o = fut.result()
            with lock:
                results.append(o)
                write_summary(out, {**meta, "wall_s": round(time.time() - t0, 1)}, results)
            extra = f" ({o.caught_by})" if o.caught_by else ""
            say(f"mutate: [{n}/{len(todo)}] {o.status}{extra} {o.seconds:.0f}s "
                f"{m.describe()}")
    return results


# ---------------------------------------------------------------- front end


@dataclass
class Request:
    """What ``cimgen mutate`` asks for (CLI options)."""

    out: Path
    rtl_dir: Path = rtl_sim.RTL_DIR
    subset: str = "fast"
    tests: tuple[str, ...] = ()
    count: int = 100
    seed: int = 1
    min_per_file: int = 6
    jobs: int = 0  # 0: the core count
    budget_s: float = 0.0  # 0: 3 x the baseline + 120 s
    only: tuple[str, ...] = ()
    resume: bool = False
    list_only: bool = False
    keep: bool = False
    min_score: float = 0.95


def _sources_sha(rtl_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(rtl_dir.rglob("*.sv")):
        h.update(p.relative_to(rtl_dir).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def main(req: Request, log: Callable[[str], None] | None = None,
         echo: Callable[[str], None] = print) -> int:
    """Enumerate, select, run; prints one line per mutant and the score.
    Returns 0 when the score reaches ``min_score``, 1 otherwise."""
    say = log or (lambda s: print(s, file=sys.stderr))
    rtl_dir = req.rtl_dir.resolve()
    if not (rtl_dir / "cim_top.sv").is_file():
        raise BadInputError("not an RTL folder (no cim_top.sv)", where=str(rtl_dir))
    if req.tests:
        tests = req.tests
    elif req.subset in SUBSETS:
        tests = SUBSETS[req.subset]
    else:
        raise BadInputError(f"unknown subset '{req.subset}' ({', '.join(SUBSETS)})",
                            where="--subset")
    if req.count < 1 or req.min_per_file < 0 or req.jobs < 0 or req.budget_s < 0:
        raise BadInputError("count must be >= 1; min-per-file, jobs and budget >= 0",
                            where="options")
    root = rtl_sim.ROOT
    for t in tests:
        if not (root / t.split("::")[0]).exists():
            raise BadInputError("no such test file", where=t)
    everything = enumerate_all(rtl_dir)
    if req.only:
        by_id = {m.id: m for m in everything}
        missing = [i for i in req.only if i not in by_id]
        if missing:
            raise BadInputError(f"unknown mutant id(s): {', '.join(missing)}", where="--only")
        chosen = [by_id[i] for i in req.only]
    else:
        chosen = select(everything, req.count, req.seed, req.min_per_file)
    if req.list_only:
        for m in chosen:
            echo(f"{m.id}  {m.describe().splitlines()[0]}")
        echo(f"{len(chosen)} of {len(everything)} mutants")
        return 0
    jobs = req.jobs or (os.cpu_count() or 1)
    env = {"CIMGEN_RTL_OPT": "-O0", "CIMGEN_WAVES_RERUN": "0", "CIMGEN_COVERAGE": "0"}
    if shutil.which("ccache"):
        env["CIMGEN_OBJCACHE"] = "ccache"
    cfg = Config(root=root, rtl_dir=rtl_dir, tests=tuple(tests), subset=req.subset, jobs=jobs,
                 budget_s=req.budget_s or 3600.0, keep=req.keep, env=env)
    base_s = None
    if not req.budget_s:
        say(f"mutate: baseline run of the subset on the unmutated RTL ({', '.join(tests)})")
        base_s = baseline(cfg)
        cfg.budget_s = round(3 * base_s + 120, 0)
        say(f"mutate: baseline {base_s:.0f} s; budget per mutant {cfg.budget_s:.0f} s")
    enumerated: dict[str, int] = {}
    for m in everything:
        enumerated[m.file] = enumerated.get(m.file, 0) + 1
    meta = {"tool": "cimgen mutate", "rtl_sha256": _sources_sha(rtl_dir),
            "seed": req.seed, "count": req.count, "min_per_file": req.min_per_file,
            "subset": req.subset if not req.tests else "custom", "tests": list(tests),
            "jobs": jobs, "budget_s": cfg.budget_s, "baseline_s": base_s,
            "cpu_count": os.cpu_count(), "load_avg_at_start": list(os.getloadavg()),
            "enumerated": {"total": len(everything), "per_file": enumerated},
            "selected": len(chosen)}
    t0 = time.time()
    outs = run(cfg, chosen, req.out, meta, resume=req.resume, log=say)
    wall = round(time.time() - t0, 1)
    write_summary(req.out, {**meta, "wall_s": wall}, outs)
    sc = score(outs)
    c = sc["counts"]
    for o in sorted(outs, key=lambda o: (o.file, o.line)):
        if o.status in ("survived", "timeout"):
            echo(f"{o.status.upper()} {o.id}: {o.file}:{o.line} `{o.original.splitlines()[0]}`"
                 f" -> `{o.replacement}`")
    echo(f"mutation score {sc['score']}: {c['killed']} killed, {c['survived']} survived, "
         f"{c['timeout']} timeout, {c['invalid']} invalid of {len(outs)} "
         f"(caught by {sc['caught_by']}); {wall:.0f} s; summary {req.out}")
    return 0 if sc["score"] is not None and sc["score"] >= req.min_score else 1
