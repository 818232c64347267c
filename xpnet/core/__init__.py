"""The maths, written once against the Array API: layers, losses, optimizers, metrics."""
from xpnet.core.activations import (GELU, Identity, LeakyReLU, Linear, ReLU, SiLU, Sigmoid, Softmax, Step,
                                    Swish, Tanh)
from xpnet.core.conv import Conv2D
from xpnet.core.dense import Dense
from xpnet.core.dropout import Dropout
from xpnet.core.gradcheck import gradcheck_loss, gradcheck_module
from xpnet.core.init import seed
from xpnet.core.losses import MAE, MSE, BinaryCrossEntropy, Loss, SoftmaxCrossEntropy
from xpnet.core.module import Module, Parameter, Sequential, module_config, module_from_config
from xpnet.core.pool import AvgPool2D, MaxPool2D
from xpnet.core.rescale import Rescale
from xpnet.core.optim import SGD, Adam, AdamW, Optimizer, make_optimizer
from xpnet.core.schedules import Constant, Cosine, StepDecay
from xpnet.core.shape import Flatten, Reshape

__all__ = [
    "GELU", "MAE", "MSE", "SGD", "Adam", "AdamW", "AvgPool2D", "BinaryCrossEntropy", "Constant", "Conv2D", "Cosine",
    "Dense", "Dropout", "Flatten", "Identity", "LeakyReLU", "Linear", "Loss", "MaxPool2D", "Module", "Optimizer",
    "Parameter", "ReLU", "Rescale", "Reshape", "Sequential", "SiLU",
    "Sigmoid", "Softmax", "SoftmaxCrossEntropy", "Step", "StepDecay", "Swish", "Tanh", "gradcheck_loss",
    "gradcheck_module", "make_optimizer", "module_config", "module_from_config", "seed",
]
