"""xpnet: neural networks written once against the Python Array API, trained on NumPy, CuPy, PyTorch or any
other Array API library. Importing xpnet loads neither CuPy nor torch."""
from xpnet.backends import available_backends, backend_for, get_backend
from xpnet.callbacks import EarlyStopping
from xpnet.core import (GELU, MAE, MSE, SGD, Adam, AdamW, BinaryCrossEntropy, Cosine, Dense, Dropout, Identity,
                        LeakyReLU, Linear, Module, Parameter, ReLU, Rescale, Sequential, SiLU, Sigmoid, Softmax,
                        SoftmaxCrossEntropy, Step, StepDecay, Swish, Tanh, seed)
from xpnet.errors import XpnetError
from xpnet.io import load_model, save_model
from xpnet.train import History, evaluate, fit, predict, train_step

__version__ = "0.1.0"

__all__ = [
    "GELU", "MAE", "MSE", "SGD", "Adam", "AdamW", "BinaryCrossEntropy", "Cosine", "Dense", "Dropout",
    "EarlyStopping", "History", "Identity", "LeakyReLU", "Linear", "Module", "Parameter", "ReLU", "Rescale",
    "Sequential", "SiLU", "Sigmoid", "Softmax", "SoftmaxCrossEntropy", "Step", "StepDecay", "Swish", "Tanh",
    "XpnetError", "available_backends", "backend_for", "evaluate", "fit", "get_backend", "load_model",
    "predict", "save_model", "seed", "train_step",
]
