"""Exporter: a calibrated QuantGraph -> model directory of FP32 and INT8 QDQ ONNX graphs (qdq.py writes them)."""
