"""Compiler: integer IR + crossbar config in, a chip image and program out.

Mappings become read recipes, weights become tiles placed on crossbars, the
code generator emits the instruction stream, and ``artifacts`` writes and
reads the compiled directory.
"""

from .adc import calibrated_adcs, calibration_batch, default_adc
from .codegen import Compiled, Compiler, Report, compile_network, device_params, machine_params
from .layout import Tensor, hwc_order

__all__ = ["Compiled", "Compiler", "Report", "Tensor", "calibrated_adcs", "calibration_batch",
           "compile_network", "default_adc", "device_params", "hwc_order", "machine_params"]
