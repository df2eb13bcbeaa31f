"""The effects table of a tuned study and the Answer read from it (analysis/effects.py): each
declared cell's pair decided in the report's family, rows sorted by what was decided."""

import gc

import numpy as np
import pandas as pd
import pytest

from bn_study.analysis import answer, effects
from bn_study.analysis.report_spec import Effect, ReportSpec

MARGIN = 0.005
SEEDS = range(8)
WHERE = 'options at their tuned settings'


@pytest.fixture(autouse=True)
def no_collect_in_holm(monkeypatch):
    monkeypatch.setattr(gc, 'collect', lambda *args: 0)  # statsmodels' Holm; no result changes


def _series(mean, spread, shift=0):
    """Accuracy by seed: `mean` plus a fixed zero-mean wobble of `spread`, rolled by `shift`
    seeds (so two series with different shifts differ by seed, not only in mean)."""
    wobble = np.roll([1, -1, 0.5, -0.5, 0.25, -0.25, 0.75, -0.75], shift)
    return pd.Series(mean + spread * wobble, index=list(SEEDS))


# Layer x matters where removed from P and where added to N; layer y's norm is shown not to
# matter where removed from P and is undecided where added to N; layer z hurts in P.
PER_OPTION = {'P': _series(0.95, 0.001), 'P -x': _series(0.92, 0.001),
              'P -y': _series(0.9502, 0.001, shift=3), 'P -z': _series(0.96, 0.001),
              'N': _series(0.90, 0.001), 'N +x': _series(0.93, 0.001),
              'N +y': _series(0.905, 0.03)}
CELLS = (Effect('x', 'removed from P', 'P', 'P -x'), Effect('x', 'added to N', 'N +x', 'N'),
         Effect('y', 'removed from P', 'P', 'P -y'), Effect('y', 'added to N', 'N +y', 'N'),
         Effect('z', 'removed from P', 'P', 'P -z'))


def _family():
    return answer.Family([answer.Comparison(WHERE, c.a, PER_OPTION[c.a], c.b, PER_OPTION[c.b])
                          for c in CELLS], MARGIN)


def test_each_row_reads_out_its_cells_and_the_rows_are_grouped_by_verdict():
    lines = effects.answer_lines(CELLS, _family(), WHERE)
    assert lines[0].startswith('- **x**: better with it in 2 of 2 (removed from P: 3.00 [')
    assert 'equivalent within ±0.50 points in 1 of 2 (removed from P: -0.02 [' in lines[1]
    assert 'undecided in 1 of 2 (added to N: 0.50 [' in lines[1]
    assert lines[2].startswith('- **z**: worse with it in 1 of 1 (removed from P: -1.00 [')
    assert lines[-1] == ('- Carries the effect (better with it somewhere, worse nowhere): x. '
                         'Shown not to matter (equivalent within ±0.50 points everywhere): '
                         'none. Worse with it: z. Mixed: none. Undecided: y.')


def test_the_table_lays_the_cells_out_by_row_and_column():
    text = effects.table(CELLS, _family(), WHERE)
    header, rule, *rows = text.splitlines()
    assert header == '|  | removed from P | added to N |'
    assert [r.split(' | ')[0] for r in rows] == ['| x', '| y', '| z']
    assert rows[2].endswith('worse with |  |')  # z was never added to N
    assert ': better with' in rows[0].split(' | ')[1]


def test_a_cell_whose_pair_was_not_compared_says_so():
    family = answer.Family([answer.Comparison(WHERE, 'P', PER_OPTION['P'], 'P -x',
                                              PER_OPTION['P -x'])], MARGIN)
    lines = effects.answer_lines(CELLS[:2], family, WHERE)
    assert 'not compared in 1 of 2 (added to N: not compared)' in lines[0]


def test_effects_round_trip_through_sweep_json_and_are_left_out_when_none():
    spec = ReportSpec(effects=CELLS)
    assert ReportSpec.from_json(spec.to_json()) == spec
    assert 'effects' not in ReportSpec().to_json()  # sweep.json files from before match
