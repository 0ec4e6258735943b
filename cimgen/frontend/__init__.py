"""Front end: ONNX/QONNX models and input data in, the integer IR out.

Takes a model file as a training tool exports it, folds its float chains into
integer thresholds and gives a ``golden_model.ir.Network``; also exports a
network back to plain ONNX and loads the digits data set.
"""
