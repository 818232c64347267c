"""Saving and loading models and checkpoints (safetensors; no pickle anywhere)."""
from xpnet.io.checkpoint import (Checkpoints, checkpoint_files, latest_checkpoint, load_checkpoint,
                                 load_latest_checkpoint, load_model, model_metadata, save_checkpoint,
                                 save_model)

__all__ = ["Checkpoints", "checkpoint_files", "latest_checkpoint", "load_checkpoint", "load_latest_checkpoint",
           "load_model", "model_metadata", "save_checkpoint", "save_model"]
