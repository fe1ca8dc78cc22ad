"""Exporter: a calibrated QuantGraph -> a model directory holding each engine's form of the graphs (qdq.py writes
them, model_dir.py the directory). It may import onnx, the calibration core and the runtime (the manifest it
writes is the runtime's contract); nothing imports it."""
