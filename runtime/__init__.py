"""Torch-free runtime: upscale images with an exported adabm-deploy model directory on ONNX Runtime."""
