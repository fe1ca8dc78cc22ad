"""adabm-deploy calibration core: AdaBM adaptive mixed-precision quantization of EDSR-style SR networks.

The package root imports nothing heavy: the torch-free runtime imports `adabm_deploy.complexity`
without pulling in torch.
"""
__version__ = "0.1.0"
