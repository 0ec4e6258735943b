"""Compiler: integer IR + crossbar config in, a chip image and program out.

Mappings become read recipes, weights become tiles placed on crossbars, the
code generator emits the instruction stream, and ``artifacts`` writes and
reads the compiled directory.

The names below are resolved on first use (PEP 562), so that running a
compile directory (``cimgen.compiler.artifacts``) does not import the code
generator and the ADC calibration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cimgen._lazy import lazy_names

if TYPE_CHECKING:
    from .adc import calibrated_adcs, calibration_batch, default_adc
    from .codegen import Compiler, compile_network
    from .compiled import Compiled, device_params, machine_params
    from .cost import Report
    from .layout import Tensor, hwc_order

_WHERE = {
    "calibrated_adcs": "adc", "calibration_batch": "adc", "default_adc": "adc",
    "Compiler": "codegen", "compile_network": "codegen",
    "Compiled": "compiled", "device_params": "compiled", "machine_params": "compiled",
    "Report": "cost", "Tensor": "layout", "hwc_order": "layout",
}

__all__ = ["Compiled", "Compiler", "Report", "Tensor", "calibrated_adcs", "calibration_batch",
           "compile_network", "default_adc", "device_params", "hwc_order", "machine_params"]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())
