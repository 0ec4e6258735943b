"""Package attributes resolved on first use (PEP 562).

A package lists which submodule defines each public name; importing the
package then costs nothing until a name is used, so the commands that only run
a compiled program do not import the compiler, ONNX or the verifier.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_names(package: str, where: dict[str, str], namespace: dict[str, Any]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: name -> its submodule in
    ``where`` (relative), imported when the name is first looked up."""

    def getattr_(name: str) -> Any:
        mod = where.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f".{mod}", package), name)

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(where))

    return getattr_, dir_
