"""The calibration core (PyTorch): networks captured as graphs, AdaBM's quantizers, bit mappings and calibration,
evaluation and results tables.

It may import torch and the runtime's torch-free definitions (errors, atomic writes, complexity, cells, the cheap
rung), which are the deployed behaviour it calibrates for; it imports nothing of ONNX and nothing from export.
"""
__version__ = "0.1.0"
