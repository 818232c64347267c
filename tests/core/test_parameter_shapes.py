"""Every layer of xpnet says, from its config alone, which parameters of which shapes it would build: the
loader checks a file's tensors against that before it allocates anything. A layer added with parameters but
without `parameter_shapes` fails here."""
from __future__ import annotations

import pytest

import xpnet as xn
from xpnet.core.module import _registry, declared_parameter_shapes, module_config, module_from_config
from xpnet.errors import CheckpointError, DTypeError

SAMPLES = {
    "Dense": [xn.Dense(3, 4), xn.Dense(3, 4, bias=False, dtype="float64")],
    "Conv2D": [xn.Conv2D(2, 3, 3), xn.Conv2D(1, 5, 2, stride=2, padding=1, bias=False)],
    "LeakyReLU": [xn.LeakyReLU(0.3)], "Dropout": [xn.Dropout(0.2)], "Reshape": [xn.Reshape((1, 2, 3))],
    "Rescale": [xn.Rescale([1.0, 2.0], [0.0, 1.0])], "MaxPool2D": [xn.MaxPool2D(2)],
    "AvgPool2D": [xn.AvgPool2D(3, stride=1)],
}
ABSTRACT = {"_Pool2D", "Sequential"}  # a base class; the container (checked through every sample below)


def _xpnet_layers() -> list[str]:
    return sorted(k for k, cls in _registry.items() if cls.__module__.startswith("xpnet.") and k not in ABSTRACT)


@pytest.mark.parametrize("name", _xpnet_layers())
def test_parameter_shapes_match_what_the_layer_builds(name):
    for layer in SAMPLES.get(name) or [_registry[name]()]:
        model = xn.Sequential([layer, xn.Sequential([layer])])
        want = {k: p.shape for k, p in model.named_parameters()}
        assert declared_parameter_shapes(module_config(model)) == want
        rebuilt = module_from_config(module_config(model))
        assert {k: p.shape for k, p in rebuilt.named_parameters()} == want


def test_someone_elses_layer_is_not_guessed():
    class Mine(xn.Module):
        def __init__(self, width: int = 2) -> None:
            self.width = width

    assert declared_parameter_shapes({"type": "Sequential", "layers": [module_config(Mine())]}) is None


@pytest.mark.parametrize("config,message", [
    ({"type": "Dense", "in_features": 2.5, "out_features": 1}, "in_features must be an integer"),
    ({"type": "Dense", "in_features": True, "out_features": 1}, "in_features must be an integer"),
    ({"type": "Dense", "in_features": 2, "out_features": 1, "rng": "x"}, "AttributeError"),
    ({"type": "Dense", "in_features": 2, "out_features": 1, "dtype": "int8"}, "floating-point dtype"),
    ({"type": "Reshape", "shape": [1, "2"]}, r"shape must be a list \(each an integer\)"),
    ({"type": "Rescale", "scale": [1.0], "offset": [float("inf")]}, "offset must be"),
    ({"type": "MaxPool2D", "kernel_size": 2, "stride": "1"}, "stride must be an integer or null"),
    ({"type": "Sequential", "layers": [{"type": "Sequential", "layers": [{"type": "Nope"}]}]},
     r"config.layers\[0\].layers\[0\]: unknown layer type"),
])
def test_a_config_is_checked_against_the_constructor(config, message):
    with pytest.raises(CheckpointError, match=message):
        declared_parameter_shapes(config)
        module_from_config(config)


def test_the_dtype_check_is_a_dtype_error_when_called_directly():
    with pytest.raises(DTypeError):
        xn.Dense(2, 2, dtype="int16")
