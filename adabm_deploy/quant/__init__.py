"""Deployable quantizers (arith.py: the integer arithmetic, defined once), AdaBM's bit mappings, the placement of
quantization points on the captured graph, and the graph run with them (the simulation of the INT8 graph)."""
from .bitmap import ImageToBit, LayerToBit
from .qgraph import QuantGraph
from .quantizers import ActQuantizer, WeightQuantizer

__all__ = ["ActQuantizer", "WeightQuantizer", "ImageToBit", "LayerToBit", "QuantGraph"]
