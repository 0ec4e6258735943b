"""BasisN: a BNN/TNN rewritten over shared basis vectors with integer coefficients.

Stage between the front end and the compiler: takes a ``golden_model.ir.Network``,
fits a basis (``fit``), optionally refines it on data (``finetune``, ``ste``),
exports the basis form to plain ONNX (``export``) and writes/reads the
basis-form directory (``io``). The data model and its reference inference are
in ``golden_model.basis``.
"""

from .io import BasisDir, load_basis, load_basis_dir

__all__ = ["BasisDir", "load_basis", "load_basis_dir"]
