"""The captured network graph (graph.py) and how it is captured from PyTorch (capture.py)."""
