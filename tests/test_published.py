"""Published claims checked against run tables: verdicts from the paired intervals."""

import pandas as pd
import pytest

from bn_study import errors, records
from bn_study.analysis import claims, report_spec


def _runs(rows):
    """rows: (bn_position, lr, seed, accuracy or None for diverged, precise accuracy)."""
    return pd.DataFrame([{
        'model.bn_position': position, 'optimizer.learning_rate': lr, 'seed': seed,
        'summary.status': records.DIVERGED if acc is None else records.COMPLETE,
        'summary.final_test_accuracy': acc, 'summary.final_test_accuracy_ema': acc,
        'summary.final_test_accuracy_precise': precise}
        for position, lr, seed, acc, precise in rows])


RUNS = _runs(
    [('after_act', 0.1, s, a, a + 0.01) for s, a in enumerate([0.95, 0.96, 0.955])] +
    [('before_act', 0.1, s, a, a) for s, a in enumerate([0.90, 0.91, 0.905])] +
    [('none', 0.1, s, a, a) for s, a in enumerate([0.95, 0.90, 0.96])] +
    [('after_act', 1.0, s, 0.9, 0.9) for s in range(3)] +
    [('none', 1.0, s, None, None) for s in range(3)])
HELD = ['model.bn_position', 'optimizer.learning_rate']


def _claim(better, worse, kind='beats', where=None):
    return report_spec.Claim('source', '1 vs 2', better, worse, kind, where or {})


def _verdicts(claim):
    return {o.held.get('optimizer.learning_rate'): o.verdict
            for o in claims.check(claim, RUNS, HELD)}


def test_a_claim_is_judged_per_held_setting_from_the_paired_interval():
    claim = _claim({'model.bn_position': 'after_act'}, {'model.bn_position': 'before_act'})
    outcomes = claims.check(claim, RUNS, HELD)
    assert [o.held for o in outcomes] == [{'optimizer.learning_rate': 0.1},
                                          {'optimizer.learning_rate': 1.0}]
    first = outcomes[0]
    # differences 0.05 each: mean 5 points, zero width
    assert first.difference.n == 3 and first.difference.mean == pytest.approx(0.05)
    assert first.verdict == 'agrees'
    assert outcomes[1].verdict == 'not measured'  # no before_act at lr 1.0
    reverse = _claim({'model.bn_position': 'before_act'}, {'model.bn_position': 'after_act'},
                     where={'optimizer.learning_rate': 0.1})
    assert _verdicts(reverse) == {None: 'disagrees'}


def test_noisy_differences_are_not_distinguishable_and_no_worse_claims_hold_then():
    beats = _claim({'model.bn_position': 'none'}, {'model.bn_position': 'after_act'},
                   where={'optimizer.learning_rate': 0.1})
    assert _verdicts(beats) == {None: 'not distinguishable at this scale'}
    no_worse = _claim({'model.bn_position': 'none'}, {'model.bn_position': 'after_act'},
                      'no_worse', {'optimizer.learning_rate': 0.1})
    assert _verdicts(no_worse) == {None: 'consistent: not distinguishable at this scale'}


def test_a_worse_side_that_diverged_everywhere_agrees_with_the_claim():
    claim = _claim({'model.bn_position': 'after_act'}, {'model.bn_position': 'none'},
                   where={'optimizer.learning_rate': 1.0})
    assert _verdicts(claim) == {None: 'agrees: the worse side diverged on all 3 seeds'}


def test_evaluation_kinds_compare_the_same_runs():
    claim = _claim({'eval': 'precise'}, {'eval': 'ema'},
                   where={'model.bn_position': 'after_act', 'optimizer.learning_rate': 0.1})
    (outcome,) = claims.check(claim, RUNS, HELD)
    assert outcome.difference.mean == pytest.approx(0.01) and outcome.verdict == 'agrees'
    assert claims.outcome_cells(outcome)[:6] == [
        'source', 'eval=precise beats eval=ema', '1 vs 2', '-', '+1.00 [1.00, 1.00]', '3']
    assert len(claims.outcome_cells(outcome)) == len(claims.COLUMNS)


def test_a_side_matching_several_runs_per_seed_is_ambiguous_not_averaged():
    claim = _claim({'model.bn_position': 'after_act'}, {'model.bn_position': 'before_act'},
                   where={})
    (outcome,) = claims.check(claim, RUNS, [])  # lr not held: two after_act runs per seed
    assert outcome.verdict.startswith('ambiguous: a side matches several runs per seed')
    assert outcome.difference.n == 0


def test_specs_round_trip_through_json_and_bad_kinds_are_refused():
    spec = report_spec.ReportSpec('norm.kind', (_claim({'norm.kind': 'group'},
                                                     {'norm.kind': 'batch'}, 'no_worse'),))
    assert report_spec.ReportSpec.from_json(spec.to_json()) == spec
    assert report_spec.ReportSpec.from_json(None) == report_spec.ReportSpec()
    with pytest.raises(errors.ConfigError, match="claim kind 'better' is not valid"):
        _claim({}, {}, 'better')


def test_a_better_side_that_diverged_everywhere_disagrees_and_partial_divergence_is_said():
    claim = _claim({'model.bn_position': 'none'}, {'model.bn_position': 'after_act'},
                   where={'optimizer.learning_rate': 1.0})
    assert _verdicts(claim) == {None: 'disagrees: the better side diverged on all 3 seeds'}
    partly = _runs([('after_act', 0.1, s, a, a) for s, a in enumerate([0.95, 0.96, 0.955])] +
                   [('none', 0.1, s, a, a) for s, a in enumerate([0.90, 0.91, None])])
    claim = _claim({'model.bn_position': 'after_act'}, {'model.bn_position': 'none'})
    (outcome,) = claims.check(claim, partly, HELD)
    assert outcome.difference.n == 2
    assert outcome.verdict == 'agrees; the worse side diverged on 1 of 3 seeds'


def test_a_key_that_follows_from_the_named_ones_is_not_held_fixed():
    """A learning rate scaled with the normalization batch: each side has one rate, so
    holding it fixed would leave the two sides in different groups."""
    runs = pd.DataFrame([{
        'norm.ghost_batch_size': n, 'optimizer.learning_rate': 0.1 * n / 32, 'seed': s,
        'summary.status': records.COMPLETE, 'summary.final_test_accuracy': a}
        for n, accs in ((32, [0.9, 0.91, 0.92]), (4, [0.8, 0.82, 0.81]))
        for s, a in enumerate(accs)])
    claim = _claim({'norm.ghost_batch_size': 32}, {'norm.ghost_batch_size': 4})
    (outcome,) = claims.check(claim, runs, ['norm.ghost_batch_size',
                                               'optimizer.learning_rate'])
    assert outcome.held == {} and outcome.difference.n == 3 and outcome.verdict == 'agrees'
