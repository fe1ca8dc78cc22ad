"""Deployable quantizers, AdaBM bit mappings, and the quantized EDSR that mirrors the exported graph."""
from .bitmap import ImageToBit, LayerToBit
from .qedsr import QuantEDSR
from .quantizers import ActQuantizer, WeightQuantizer

__all__ = ["ActQuantizer", "WeightQuantizer", "ImageToBit", "LayerToBit", "QuantEDSR"]
