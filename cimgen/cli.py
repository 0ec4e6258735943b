"""The ``cimgen`` command line: a thin layer over the library.

Exit codes: 0 success, 1 verification mismatch, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import numpy as np

from golden_model.errors import CimgenError


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect_model import describe
    from .onnx_import import load_model

    print(describe(load_model(args.model)))
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from golden_model.reference import check_inputs, forward_int, quantize_input

    from .fileio import check_out_dir, load_npy, save_npy_atomic
    from .onnx_import import load_model

    check_out_dir(args.out)
    net = load_model(args.model)
    x = load_npy(args.inputs)
    check_inputs(net, x, where=args.inputs)
    logits = forward_int(net, quantize_input(net, x))
    assert isinstance(logits, np.ndarray)
    save_npy_atomic(args.out, logits.astype(np.int64))
    print(f"{x.shape[0]} image(s) -> {args.out} (int64 logits {list(logits.shape)})")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
