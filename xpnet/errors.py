"""Errors a user can cause and fix. The CLI prints their message on one line and exits with code 2.

This module is a leaf: every layer of xpnet may import it, and it imports nothing of xpnet.
"""
from __future__ import annotations


class XpnetError(Exception):
    """Base class: something the caller gave us is wrong, and the message says what."""


class ShapeError(XpnetError, ValueError):
    """An array has the wrong number of dimensions or the wrong size along one."""


class DTypeError(XpnetError, TypeError):
    """An array has a dtype the operation cannot use (integers into Dense, float64 into a float32 model)."""


class DataError(XpnetError, ValueError):
    """Data is missing, corrupt, truncated, fails its checksum, or holds NaN/inf or out-of-range labels."""


class CheckpointError(XpnetError, ValueError):
    """A model or checkpoint file is unreadable, unsafe, or does not match the model."""


class BackendUnavailable(XpnetError, RuntimeError):
    """The requested array backend is unknown or cannot run on this machine."""


class NotDifferentiableError(XpnetError, RuntimeError):
    """backward was asked of a layer with no useful gradient (Step)."""


class DivergedError(XpnetError, ArithmeticError):
    """Training produced a NaN or infinite loss."""


class DistributedError(XpnetError, RuntimeError):
    """Data-parallel training cannot run as asked: mpi4py or NCCL missing, or a setting the processes cannot share."""


class TrainingInterrupted(XpnetError, KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM after a whole step; the message says where it was saved.

    `checkpoint` is that file's path (None when no checkpoint directory was set), so a caller can act on it
    (the command line words its own advice) without parsing the message."""

    def __init__(self, message: str, checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        # Exceptions pickle their args only; the path must survive a trip between processes too.
        return type(self), (str(self), self.checkpoint)


class CorruptFileError(CheckpointError):
    """A file that is not what it claims: truncated, torn, bit-flipped, or not safetensors at all."""


class OutputPathError(XpnetError, ValueError):
    """An output path xpnet must not or cannot write: a device, FIFO or directory, or a directory not writable."""
