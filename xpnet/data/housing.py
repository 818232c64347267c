"""The seeds' synthetic house prices: area, location (1, 2 or 3), age and rooms -> price in k$."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES = ("area_m2", "location_2", "location_3", "age_years", "rooms")


@dataclass
class Housing:
    x_train: np.ndarray  # (n, 5) float64: area, location one-hot (1 is the baseline), age, rooms
    y_train: np.ndarray  # (n,) price in k$
    x_test: np.ndarray
    y_test: np.ndarray


def make_housing(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Housing:
    """Prices from a known rule plus noise: larger, newer, better-located houses with more rooms cost more;
    age depreciates fast at first (a square root), so a linear model underfits and an MLP helps."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    area = rng.uniform(40.0, 250.0, n)
    location = rng.integers(1, 4, n)
    age = rng.uniform(0.0, 60.0, n)
    rooms = np.clip(np.round(area / 35.0 + rng.normal(0.0, 0.8, n)), 1, 8)
    premium = np.array([0.0, 0.0, 60.0, 150.0])[location]
    price = 40.0 + 1.6 * area + premium - 12.0 * np.sqrt(age) + 9.0 * rooms + rng.normal(0.0, 12.0, n)
    x = np.stack([area, location == 2, location == 3, age, rooms], axis=1).astype(np.float64)
    return Housing(x[:n_train], price[:n_train], x[n_train:], price[n_train:])


def linear_points() -> tuple[np.ndarray, np.ndarray]:
    """The seeds' five points on y = 3x: x = 1, 3, 4, 8, 10."""
    x = np.array([[1.0], [3.0], [4.0], [8.0], [10.0]])
    return x, 3.0 * x[:, 0]
