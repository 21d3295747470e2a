"""The demo's data, generated in-process with NumPy: two spirals (the large-m set), the
course's moons, and a year of noisy daily temperatures (the lecture's EWA example)."""

from __future__ import annotations

import numpy as np

from ..averages import ewa


def spirals(m: int, seed: int, turns: float = 4.0, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals, one per class, with Gaussian noise.

    Class ``c`` (0 or 1) is the arm ``r = t / (2 pi turns)``, angle ``t + c pi`` for ``t`` in
    ``(0, 2 pi turns]``, drawn with uniform density per unit area, plus N(0, noise^2) on
    each coordinate. The arms of the two classes are ``1 / (2 turns)`` apart radially, so
    noise of that order makes them overlap and no classifier is perfect.

    Args:
        m: number of examples (>= 1).
        seed: seed of the NumPy generator.
        turns: turns of each arm.
        noise: standard deviation of the noise, in units of the outer radius (1).

    Returns:
        X of shape (m, 2) and Y of shape (m, 1), both float32; Y holds 0 or 1.
    """
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, size=m)
    r = np.sqrt(rng.uniform(0.0, 1.0, size=m))
    angle = r * (2 * np.pi * turns) + np.pi * label
    X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    X += rng.normal(scale=noise, size=X.shape)
    return X.astype(np.float32), label.reshape(-1, 1).astype(np.float32)


def moons(m: int, seed: int, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, as scikit-learn's ``make_moons(m, noise=noise)``.

    The first ``m // 2`` examples (label 0) lie on the upper half circle of radius 1 around
    (0, 0), the others (label 1) on the lower half circle around (1, 0.5), at evenly spaced
    angles; each coordinate gets N(0, noise^2) and the rows are shuffled.

    Args:
        m: number of examples (>= 2).
        seed: seed of the NumPy generator (noise and order).
        noise: standard deviation of the noise, in the circles' units (radius 1).

    Returns:
        X of shape (m, 2) and Y of shape (m, 1), both float32; Y holds 0 or 1.
    """
    rng = np.random.default_rng(seed)
    n_out = m // 2
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, m - n_out)
    X = np.concatenate(
        [
            np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
            np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1),
        ]
    )
    Y = np.concatenate([np.zeros(n_out), np.ones(m - n_out)])
    X += rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(m)
    return X[order].astype(np.float32), Y[order].reshape(-1, 1).astype(np.float32)


def daily_temperatures(seed: int, days: int = 365) -> np.ndarray:
    """A year of noisy daily temperatures in degrees Fahrenheit, like the lecture's London
    example: a seasonal cycle from about 38 F in mid-January to 66 F in mid-July, plus
    weather that persists for a few days (an AR(1) process with a 3-day memory, standard
    deviation about 5 F).

    Args:
        seed: seed of the NumPy generator.
        days: number of days (>= 1).

    Returns:
        A float64 array of ``days`` temperatures, day 1 first.
    """
    rng = np.random.default_rng(seed)
    day = np.arange(days)
    season = 52.0 - 14.0 * np.cos(2 * np.pi * (day - 15) / 365.0)
    shocks = rng.normal(scale=5.0 * np.sqrt(1 - (2 / 3) ** 2), size=days)
    # The AR(1) weather w_t = (2/3) w_{t-1} + shock_t is an EWA (without bias correction)
    # of 3 * shock_t, so ferroptim computes it.
    weather = ewa(shocks * 3.0, beta=2 / 3, bias_correction=False)
    return season + weather
