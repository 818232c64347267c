"""Saving and loading models and checkpoints (safetensors; no pickle anywhere)."""
from xpnet.io.checkpoint import latest_checkpoint, load_checkpoint, load_model, save_checkpoint, save_model

__all__ = ["latest_checkpoint", "load_checkpoint", "load_model", "save_checkpoint", "save_model"]
