"""xpnet: neural networks written once against the Python Array API, trained on NumPy, CuPy, PyTorch or any
other Array API library. Importing xpnet loads neither CuPy nor torch."""
from xpnet.backends import available_backends, backend_for, get_backend
from xpnet.training.callbacks import EarlyStopping
from xpnet.core import (GELU, MAE, MSE, SGD, Adam, AdamW, AvgPool2D, BinaryCrossEntropy, Conv2D, Cosine, Dense,
                        Dropout, Flatten, Identity, LeakyReLU, Linear, MaxPool2D, Module, Parameter, ReLU, Rescale,
                        Reshape, Sequential, SiLU, Sigmoid, Softmax, SoftmaxCrossEntropy, Step, StepDecay, Swish, Tanh,
                        seed)
from xpnet.errors import XpnetError
from xpnet.io import Checkpoints, load_model, model_metadata, save_model
from xpnet.training.fit import History, evaluate, fit, predict, train_step

__version__ = "0.2.0"

__all__ = [
    "Adam", "AdamW", "AvgPool2D", "BinaryCrossEntropy", "Checkpoints", "Conv2D", "Cosine", "Dense", "Dropout",
    "EarlyStopping", "Flatten", "GELU", "History", "Identity", "LeakyReLU", "Linear", "MAE", "MSE", "MaxPool2D",
    "Module", "Parameter", "ReLU", "Rescale", "Reshape", "SGD", "Sequential", "SiLU", "Sigmoid", "Softmax",
    "SoftmaxCrossEntropy", "Step", "StepDecay", "Swish", "Tanh", "XpnetError", "available_backends",
    "backend_for", "evaluate", "fit", "get_backend", "load_model", "model_metadata", "predict", "save_model", "seed",
    "train_step",
]
