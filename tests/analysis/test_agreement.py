"""The one agreement rule (``analysis.agreement``) that the report, the claims and ``clphase verify`` share."""

from __future__ import annotations

import math

import pytest

from analysis.agreement import agrees, inside

NAN = math.nan
GRID = (2.0, 4.0, 8.0, 16.0, 32.0)


@pytest.mark.parametrize("fitted, theory, expected", [
    ((6.0, 4.0, 8.0, None), (8.0, None), True),  # at the interval's top: the metric has crossed there
    ((11.0, 8.0, 16.0, None), (8.0, None), False),  # at its bottom: the metric has not crossed there
    ((11.0, 8.0, 16.0, None), (12.0, None), True),
    ((11.0, 8.0, 16.0, None), (17.0, None), False),  # one grid step off is not agreement any more
    ((11.0, 8.0, 16.0, None), (32.0, None), False),
    ((11.0, NAN, 16.0, None), (2.0, None), True),  # open below: some replicates are censored below
    ((11.0, NAN, NAN, None), (8.0, None), False),  # one seed: no interval
    ((NAN, NAN, NAN, None), (8.0, None), False),  # no usable trial
    ((NAN, NAN, NAN, "above"), (NAN, "above"), True),
    ((NAN, NAN, NAN, "above"), (NAN, "below"), False),
    ((NAN, NAN, NAN, "above"), (32.0, None), False),  # the theory crosses at the largest y; the data do not
    ((NAN, NAN, NAN, "above"), (128.0, None), True),  # a predicted value beyond the range is censored there
    ((NAN, NAN, NAN, "below"), (1.0, None), True),
    ((11.0, 8.0, 16.0, None), (NAN, "above"), False),
    ((11.0, 8.0, 16.0, None), (NAN, None), None),  # no prediction
])
def test_a_row_agrees_when_the_theory_lies_in_its_interval_or_both_are_censored_alike(fitted, theory, expected):
    verdict, reason = agrees(*fitted, *theory, grid=GRID)
    assert verdict is expected and reason


@pytest.mark.parametrize("censored, bound, theory, expected", [
    ("below", 2.0, 2.0, True),  # past the threshold already at y = 2: a boundary at 2 is what the data say
    ("below", 2.0, 4.0, False),
    ("below", 32.0, 8.0, True),  # a row whose small-y cells are missing bounds its boundary at its own end
    ("above", 32.0, 32.0, False),  # not past it at 32: the boundary lies beyond
    ("above", 16.0, 32.0, True),  # a row that ends at 16 says nothing against 32
    ("above", 16.0, 8.0, False),
])
def test_a_censored_row_is_compared_with_its_own_end_of_the_range(censored, bound, theory, expected):
    verdict, reason = agrees(NAN, NAN, NAN, censored, theory, None, grid=GRID, bound=bound)
    assert verdict is expected and f"{bound:g}" in reason


def test_a_censored_critical_z_is_compared_with_its_own_end_the_other_way_round():
    # [z_low, z_high): in the phase still at the largest z 0.75 -> z* >= 0.75; at no z from 0.0 -> z* < 0.0
    z_grid = (0.0, 0.25, 0.5, 0.75)
    assert agrees(NAN, NAN, NAN, "above", 0.75, None, grid=z_grid, closed="left", bound=0.75)[0] is True
    assert agrees(NAN, NAN, NAN, "above", 0.5, None, grid=z_grid, closed="left", bound=0.75)[0] is False
    assert agrees(NAN, NAN, NAN, "below", 0.0, None, grid=z_grid, closed="left", bound=0.0)[0] is False


def test_the_critical_z_interval_is_closed_at_its_low_end():
    # z_low: some y still reaches the phase there; z_high: none does
    assert agrees(0.5, 0.4, 0.6, None, 0.4, None, closed="left")[0] is True
    assert agrees(0.5, 0.4, 0.6, None, 0.6, None, closed="left")[0] is False
    assert agrees(0.5, 0.4, 0.6, None, 0.6, None, closed="right")[0] is True
    assert inside(0.45, 0.4, NAN, "left") and not inside(0.35, 0.4, NAN, "left")
