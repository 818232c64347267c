"""Ready networks: functions that wire layers together (no maths here)."""
from xpnet.models.lenet import lenet
from xpnet.models.mlp import mlp, mnist_mlp
from xpnet.models.regression import housing_mlp, linear_regression

__all__ = ["housing_mlp", "lenet", "linear_regression", "mlp", "mnist_mlp"]
