"""Decisions from paired seeds: TOST, Holm, seeds to decide and outcomes against hand-computed
values and synthetic studies with known effects; learning-rate sensitivity; tolerant range."""

import math

import numpy as np
import pandas as pd
import pytest

from bn_study.analysis import decide


def _study(rng, seeds, difference, sd):
    """Accuracies (0-1) per seed for options a and b: a shared per-seed effect, which pairing
    removes, and option noise whose paired difference has sd `sd`; a's true lead `difference`."""
    index = pd.RangeIndex(seeds, name='seed')
    base = 0.9 + rng.normal(0, 0.01, seeds)
    a = base + difference + rng.normal(0, sd / math.sqrt(2), seeds)
    b = base + rng.normal(0, sd / math.sqrt(2), seeds)
    return pd.Series(a, index), pd.Series(b, index)


def test_tost_against_closed_form():
    # d = a - b = (2, -1, 3, 0, 1) / 1000: mean 1e-3, sd 1e-3 * sqrt(2.5), se = 1e-3 / sqrt(2).
    # Margin 4e-3: t_low = 5 sqrt(2), t_high = -3 sqrt(2), df 4; p = F_4(-3 sqrt(2)), the
    # binding side. With the df-4 t cdf F(x) = 1/2 + 3/8 x/sqrt(u) (1 - x^2 / (12 u)),
    # u = 1 + x^2/4 = 11/2, this is 1/2 - 18 / (11 sqrt(11)).
    d = np.array([2, -1, 3, 0, 1]) / 1000
    b = np.full(5, 0.9)
    expected = 0.5 - 18 / (11 * math.sqrt(11))
    assert abs(expected - 0.0066177997818413) < 1e-15
    assert decide.tost_paired(b + d, b, 0.004) == pytest.approx(expected, abs=1e-9)
    # Swapping a and b mirrors the difference; the symmetric margin gives the same p.
    assert decide.tost_paired(b, b + d, 0.004) == pytest.approx(expected, abs=1e-9)


def test_tost_edge_cases():
    assert math.isnan(decide.tost_paired(np.array([0.9]), np.array([0.8]), 0.01))
    same = np.array([0.90, 0.91, 0.92])
    assert decide.tost_paired(same + 0.004, same, 0.005) == 0.0
    assert decide.tost_paired(same + 0.006, same, 0.005) == 1.0


def test_holm_against_hand_values():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06
    # (adjusted values never fall along the order); reported in the input order.
    assert decide.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # A NaN is no test: the family is the two others (0.01 x 2, then max(0.02, 0.04)).
    adjusted = decide.holm([0.01, math.nan, 0.04])
    assert math.isnan(adjusted[1])
    assert [adjusted[0], adjusted[2]] == pytest.approx([0.02, 0.04])
    assert all(math.isnan(p) for p in decide.holm([math.nan, math.nan]))


def test_seeds_to_decide_against_hand_values():
    # Difference, mean = sd (margin 0.005 < |mean|, so equivalence is impossible): the smallest
    # n with n >= (t_{.975,n-1} + t_{.8,n-1})^2. From t tables: n = 9 gives
    # (2.306 + 0.889)^2 = 10.21 > 9; n = 10 gives (2.262 + 0.883)^2 = 9.89 <= 10.
    assert decide.seeds_to_decide(0.01, 0.01, 0.005, 0.05) == (10, 'better')
    assert decide.seeds_to_decide(-0.01, 0.01, 0.005, 0.05) == (10, 'worse')
    # Equivalence, mean 0 and margin = sd (a difference can never be shown): the smallest n
    # with n >= (t_{.95,n-1} + t_{.9,n-1})^2. n = 10: (1.833 + 1.383)^2 = 10.34 > 10;
    # n = 11: (1.812 + 1.372)^2 = 10.14 <= 11.
    assert decide.seeds_to_decide(0.0, 0.01, 0.01, 0.05) == (11, 'equivalent')
    # Zero spread decides at once. A NaN spread, or a mean at the margin too small for a
    # difference within 10 000 pairs, cannot be planned.
    assert decide.seeds_to_decide(0.003, 0.0, 0.005, 0.05) == (2, 'equivalent')
    assert decide.seeds_to_decide(0.01, math.nan, 0.005, 0.05) == (None, 'inconclusive')
    assert decide.seeds_to_decide(1e-4, 1.0, 1e-4, 0.05) == (None, 'inconclusive')


def test_equal_options_are_equivalent():
    a, b = _study(np.random.default_rng(0), 60, 0.0, 0.003)
    [decision] = decide.decide([('a', a, 'b', b)], margin=0.005)
    assert decision.outcome == 'equivalent'
    assert decision.p_equivalence_holm < 0.05 <= decision.p_difference_holm
    assert (decision.seeds_needed, decision.would_be) == (None, '')
    assert decision.difference.n == 60
    assert decision.sd == pytest.approx(np.std(a - b, ddof=1))


def test_real_difference_is_better_one_way_and_worse_the_other():
    a, b = _study(np.random.default_rng(1), 20, 0.015, 0.003)
    forward, backward = decide.decide([('a', a, 'b', b), ('b', b, 'a', a)], margin=0.005)
    assert (forward.a, forward.b, forward.outcome) == ('a', 'b', 'better')
    assert (backward.a, backward.b, backward.outcome) == ('b', 'a', 'worse')
    # A family of two: Holm doubles the smaller p of the two equal ones.
    assert forward.p_difference_holm == pytest.approx(2 * forward.p_difference)
    assert forward.difference.low > 0.01


def test_too_few_seeds_is_inconclusive_with_the_seeds_it_would_take():
    a, b = _study(np.random.default_rng(2), 3, 0.003, 0.005)
    [decision] = decide.decide([('a', a, 'b', b)], margin=0.005)
    assert decision.outcome == 'inconclusive'
    assert decision.seeds_needed > 3
    assert decision.would_be in ('better', 'worse', 'equivalent')
    assert (decision.seeds_needed, decision.would_be) == decide.seeds_to_decide(
        decision.difference.mean, decision.sd, 0.005, 0.05)


def test_pairs_only_on_shared_seeds():
    a = pd.Series([0.91, 0.92, 0.93, 0.50], index=[0, 1, 2, 3])
    b = pd.Series([0.90, 0.90, 0.90], index=[0, 1, 2])
    [decision] = decide.decide([('a', a, 'b', b)], margin=0.005)
    assert decision.difference.n == 3
    assert decision.difference.mean == pytest.approx(0.02)


def test_interim_looks_make_a_borderline_decision_stricter():
    # Ten differences with mean 0.01 and t = 3 (two-sided p ~ 0.015): decided at 0.05, not at
    # 0.05 / 10. The margin is below the mean, so equivalence cannot rescue it.
    z = np.array([-1.5, -1.2, -0.8, -0.4, -0.1, 0.1, 0.4, 0.8, 1.2, 1.5])
    z = (z - z.mean()) / z.std(ddof=1)
    d = 0.01 + z * 0.01 * math.sqrt(10) / 3
    b = pd.Series(np.full(10, 0.9))
    a = b + d
    [once] = decide.decide([('a', a, 'b', b)], margin=0.005)
    [tenth] = decide.decide([('a', a, 'b', b)], margin=0.005, looks=10)
    assert 0.005 < once.p_difference < 0.05
    assert once.outcome == 'better'
    assert tenth.outcome == 'inconclusive'
    assert (tenth.would_be, tenth.seeds_needed > 10) == ('better', True)


def test_zero_spread_differences():
    b = pd.Series([0.90, 0.91, 0.92])
    shifted, same = decide.decide([('a', b + 0.01, 'b', b), ('c', b, 'b', b)], margin=0.005)
    assert (shifted.p_difference, shifted.outcome) == (0.0, 'better')
    # No difference at all is no evidence of one, but exact equivalence.
    assert math.isnan(same.p_difference) and math.isnan(same.p_difference_holm)
    assert (same.p_equivalence, same.outcome) == (0.0, 'equivalent')


@pytest.mark.parametrize('margin', [0.0, -0.01])
def test_margin_must_be_positive(margin):
    b = pd.Series([0.90, 0.91, 0.92])
    with pytest.raises(ValueError, match='margin must be > 0'):
        decide.decide([('a', b, 'b', b)], margin=margin)


def test_lr_sensitivity_by_hand():
    # l* = 0.3; terms 0.5 - 0.3, 0.3 - 0.3 and a diverged run at l_0: 2.3 - 0.3.
    losses = {0.01: 0.5, 0.1: 0.3, 1.0: math.nan}
    assert decide.lr_sensitivity(losses, 2.3) == pytest.approx((0.2 + 0.0 + 2.0) / 3)
    # A loss above l_0 (or infinite) counts as l_0.
    for above in (5.0, math.inf):
        assert decide.lr_sensitivity({0.01: 0.5, 0.1: 0.3, 1.0: above}, 2.3) == pytest.approx(
            0.7333333333)
    assert math.isnan(decide.lr_sensitivity({0.1: math.nan}, 2.3))


def test_tolerant_range():
    # Best 0.95 at 0.1; 0.03 and 0.3 within 0.01. A NaN at 1.0 cuts the run above, and 0.01
    # (0.90) is outside the tolerance below, so 0.001 (0.945) does not join.
    accuracy = {0.001: 0.945, 0.01: 0.90, 0.03: 0.942, 0.1: 0.95, 0.3: 0.941, 1.0: math.nan,
                3.0: 0.949}
    assert decide.tolerant_range(accuracy, 0.01) == (0.03, 0.3)
    assert decide.tolerant_range(accuracy, 0.0) == (0.1, 0.1)
    assert decide.tolerant_range(accuracy, 0.1) == (0.001, 0.3)
    assert decide.tolerant_range({0.1: math.nan, 0.3: math.nan}, 0.01) is None
