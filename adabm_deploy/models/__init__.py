"""EDSR in PyTorch and its strict checkpoint loader."""
from .checkpoint import EDSRConfig, load_edsr, infer_config
from .edsr import EDSR

__all__ = ["EDSR", "EDSRConfig", "load_edsr", "infer_config"]
