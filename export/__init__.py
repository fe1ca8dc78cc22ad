"""Exporter: a calibrated QuantEDSR -> model directory of FP32 and INT8 QDQ ONNX graphs."""
