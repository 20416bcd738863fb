"""Normalised returns (`lake_schema.checks.Reference`), against hand computations: the paper's
division by online Sable's return, and random-to-Sable where that return is not positive."""

import itertools

import numpy as np
import pytest

from lake_schema.checks import Reference


@pytest.mark.parametrize("sable, random, mean, expected", [
    (0.8, 0.1, 0.4, 0.5),        # the paper's: 0.4 / 0.8
    (0.8, 0.9, 0.4, 0.5),        # a positive reference divides whatever random's return
    (-2.0, -5.0, -3.0, 2 / 3),   # (-3 + 5) / (-2 + 5): two thirds of the way from random
    (-2.0, -5.0, -5.0, 0.0),     # random scores 0 ...
    (-2.0, -5.0, -2.0, 1.0),     # ... online Sable 1 ...
    (-2.0, -5.0, -1.0, 4 / 3),   # ... and a better model above 1, not below (the old -1/-2)
    (0.0, -1.0, -0.5, 0.5),      # a zero reference above random: (−0.5 + 1) / (0 + 1)
])
def test_normalise_by_hand(sable, random, mean, expected):
    ref = Reference(sable, random)
    assert ref.problem is None
    assert ref.normalise(mean) == pytest.approx(expected)


def test_a_better_return_never_normalises_lower():
    """What periodic evaluation's best checkpoint relies on, for every usable reference."""
    values = (-7.0, -2.0, -0.5, 0.0, 0.3, 1.0)
    returns = np.linspace(-10, 2, 25)
    for sable, random in itertools.product(values, values):
        ref = Reference(sable, random)
        if ref.problem is None:
            normalised = [ref.normalise(float(m)) for m in returns]
            assert np.all(np.diff(normalised) > 0), (sable, random)
            assert ref.normalise(sable) == pytest.approx(1.0)


@pytest.mark.parametrize("sable, random, problem", [
    (0.0, 0.1, "zero and not above random"),
    (-2.0, -1.0, "negative and not above random"),
    (-2.0, -2.0, "negative and not above random"),
    (float("nan"), 0.1, "not finite"),
    (0.5, float("inf"), "not finite"),
])
def test_undefined_normalisations_are_named(sable, random, problem):
    assert Reference(sable, random).problem == problem
