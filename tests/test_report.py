"""The report's statistics against hand-computed values, and a report from synthetic records."""

import math
import os

import pandas as pd
import pytest

from bn_study import errors, records
from bn_study.analysis import answer, figures, findings, markdown, report, report_spec, stats
from bn_study.studies import declare, sweep_index
from bn_study.training import run_record
from configs import default


def test_mean_interval_is_the_t_interval():
    # mean 2.5, s = sqrt(5/3) = 1.290994, t(0.975, 3) = 3.182446: half-width 2.054261
    interval = stats.mean_interval([1, 2, 3, 4])
    assert (interval.mean, interval.n) == (2.5, 4)
    assert interval.low == pytest.approx(0.445739, abs=1e-6)
    assert interval.high == pytest.approx(4.554261, abs=1e-6)
    one = stats.mean_interval([0.97])
    assert one.mean == 0.97 and math.isnan(one.low) and not one.excludes_zero()


def test_paired_comparison_uses_matched_seeds_only():
    a = pd.Series([0.90, 0.92, 0.94, 0.50], index=[0, 1, 2, 7])  # seed 7: a only
    b = pd.Series([0.89, 0.90, 0.93], index=[0, 1, 2])
    p = stats.paired('a', a, 'b', b)
    # differences 0.01, 0.02, 0.01: mean 0.013333, s = 0.0057735, t(0.975, 2) = 4.302653,
    # half-width 0.0143422; t = 4 on 2 df: two-sided p = 1 - 4 / sqrt(18) = 0.0571910
    assert p.difference.n == 3
    assert p.difference.mean == pytest.approx(0.0133333, abs=1e-6)
    assert p.difference.low == pytest.approx(-0.0010089, abs=1e-6)
    assert p.difference.high == pytest.approx(0.0276755, abs=1e-6)
    assert p.p_value == pytest.approx(0.0571910, abs=1e-6)
    assert not p.difference.excludes_zero()


def test_ranking_marks_what_cannot_be_told_apart():
    seeds = [0, 1, 2, 3]
    per = {'none': pd.Series([0.90, 0.91, 0.90, 0.91], index=seeds),
           'after_act': pd.Series([0.97, 0.975, 0.97, 0.972], index=seeds),
           'before_act': pd.Series([0.971, 0.972, 0.969, 0.975], index=seeds)}
    ranking = stats.rank(per)
    assert [name for name, _, _ in ranking] == ['after_act', 'before_act', 'none']
    assert ranking[1][2] == ['after_act'] and ranking[2][2] == []
    family = answer.Family([answer.Comparison('here', a, per[a], b, per[b])
                            for a, b in findings.pairs(per)], margin=0.005)
    lines = findings.verdict(per, family.within('here'))
    # Differences (-0.001, 0.003, 0.001, -0.003): mean 0, well inside ±0.5 points.
    assert lines[0].startswith('after_act - before_act = +0.00 points, 95% CI [')
    assert lines[0].endswith('over 4 seeds: equivalent within ±0.50 points.')
    # means 0.97175 and 0.905
    # sd of the differences 0.003948, t(0.975, 3) = 3.182: half-width 0.63 points.
    assert lines[1] == ('after_act - none = +6.67 points, 95% CI [6.05, 7.30] over 4 seeds: '
                        'after_act better.')


def write_run(sweep_dir, overrides, accuracy, status=records.COMPLETE):
    """One run's record (two epochs, diagnostics with norm variances and percentiles, a
    summary), written by the training code's record writer."""
    config = declare.apply_overrides(default.get_config(), overrides)
    workdir = os.path.join(sweep_dir, declare.run_name(overrides))
    record = run_record.RunRecord(workdir)
    record.start(config, None)
    for epoch in (1, 2):
        record.log_epoch({'epoch': epoch, 'step': 31 * epoch, 'train_loss': 1.0 / epoch,
                          'test_accuracy': accuracy - 0.05 / epoch})
    record.log_diagnostics(62, [{'step': 62, 'layer': 'norm_conv1', 'input_var': 2.0,
                                 'output_var': 1.0},
                                {'step': 62, 'layer': 'act_fc1', 'p15': -1.0, 'p50': 0.0,
                                 'p85': 1.0}])
    summary = {'status': status}
    if status == records.COMPLETE:
        summary.update(final_test_accuracy=accuracy, final_val_accuracy=accuracy - 0.01,
                       selected_test_accuracy=accuracy, final_test_loss=1 - accuracy)
    record.finish(summary)


def write_study_records(d: str) -> None:
    """A study's records, written by the training code's record writer: two placements x
    two learning rates x 3 seeds, a diverged run, a run on another dataset, diagnostics, and
    a published claim in sweep.json."""
    for seed, (none, after) in enumerate([(0.90, 0.95), (0.91, 0.96), (0.905, 0.955)]):
        for lr, shift in ((0.05, 0.0), (0.5, -0.02)):
            write_run(d, {'model.bn_position': 'none', 'optimizer.learning_rate': lr,
                          'seed': seed}, none + shift)
            write_run(d, {'model.bn_position': 'after_act', 'optimizer.learning_rate': lr,
                          'seed': seed}, after + shift)
    write_run(d, {'model.bn_position': 'none', 'optimizer.learning_rate': 5.0, 'seed': 0}, 0,
              records.DIVERGED)
    write_run(d, {'data.name': 'mnist', 'seed': 0}, 0.99)  # another dataset: its own section
    claim = report_spec.Claim('a paper', '0.9 vs 0.8', {'model.bn_position': 'after_act'},
                              {'model.bn_position': 'none'})
    sweep_index.record_sweep(d, default.get_config(), [],
                             report_spec.ReportSpec(claims=(claim,)).to_json())


def test_a_report_from_records(tmp_path):
    d = str(tmp_path)
    write_study_records(d)
    os.makedirs(tmp_path / 'broken')
    (tmp_path / 'broken' / records.CONFIG_FILE).write_text('{not json')
    written = report.write_report(d)
    assert written.path == os.path.join(d, report.REPORT_FILE)
    text = open(written.path).read()
    assert 'Skipped 1 run(s) with unreadable records: broken.' in text
    # after_act vs none at lr 0.05 and 0.5; lr 0.5 vs 0.05 for each placement: one family.
    assert 'This report decides 4 paired comparisons (runs paired by seed) as one family' in text
    assert ('| a paper | bn_position=after_act beats bn_position=none | 0.9 vs 0.8 | '
            'name=mnist_5k, learning_rate=0.05 | +5.00 [5.00, 5.00] | 3 | - | agrees |') in text
    assert '| name=mnist_5k, learning_rate=5.0 | - | 0 | - | not measured |' in text
    assert '## data.name=mnist_5k, model.name=simple_cnn' in text
    assert '## data.name=mnist, model.name=simple_cnn' in text
    assert 'One seed per option: no intervals or tests' in text  # the mnist section
    # The Answer opens the report: per setting, the option no other beats, and why.
    answer_part = text[text.index('## Answer'):text.index('## Published')]
    assert ('- **data.name=mnist_5k, model.name=simple_cnn; optimizer.learning_rate=0.05**: '
            'recommended **after_act**: test accuracy 0.9550 [0.9426, 0.9674] over 3 seeds.\n'
            '  - better than: none.') in answer_part
    assert 'optimizer.learning_rate=5.0**: fewer than two options' in answer_part
    assert ('| after_act | none | 5.00 | [5.00, 5.00] | 3 | 0.000 | 0.000 | 1.000 | 1.000 | '
            'after_act better |') in text
    assert ('after_act - none = +5.00 points, 95% CI [5.00, 5.00] over 3 seeds: after_act '
            'better.') in text
    # t(0.975, 2) * 0.005 / sqrt(3); then the validation and validation-selected columns.
    assert ('| after_act | 0.05 | 0.9550 [0.9426, 0.9674] | 0.9450 [0.9326, 0.9574] | '
            '0.9550 [0.9426, 0.9674] |') in text
    assert '| none | 5.0 | - | - | - | - | 0 | 1 |' in text  # every seed diverged
    assert '![optimizer.learning_rate](against_' in text
    assert '| none | 0.05 | norm_conv1 | 2.0000 | 1.0000 |' in text
    # The swept learning rate's effect, per placement, paired on seeds (5.0 only diverged).
    assert '### Effect of optimizer.learning_rate' in text
    assert ('optimizer.learning_rate (bn_position=after_act): 0.5 - 0.05 = -2.00 points, 95% CI '
            '[-2.00, -2.00] over 3 seeds: 0.05 better.') in text
    assert 'optimizer.learning_rate=5.0 instead of' not in text
    assert 'Percentiles of the input of act_fc1 over training' in text
    pngs = [f for f in os.listdir(d) if f.endswith('.png')]
    # lr figure; per lr setting and for mnist: curves and activation-input percentiles
    assert len(pngs) == 1 + 2 * (3 + 1)
    # The outline printed after a sweep: the Answer's lines, then every section title and
    # verdict, in the report's order, as the lines of REPORT.md that carry them read.
    shown = ('## ', '### Effect', '**Verdict.**', '**Effect.**', '**Published.**', '- **',
             '  - ')
    assert written.verdict_lines == [
        line.lstrip('#* ').replace('Verdict.** ', '  ').replace('Effect.** ', '  ')
        .replace('Published.** ', '  ') if not line.startswith(('- **', '  - ')) else
        f'  {line.strip()}' for line in text.splitlines()
        if line.startswith(shown) or ' compared, ' in line]
    assert written.verdict_lines[0] == 'Answer'
    assert 'Published results side by side' in written.verdict_lines


def test_every_table_has_one_form():
    assert markdown.table(['a', 'b'], [[1, 'x'], [2.5, '-']]) == (
        '| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | - |')
    assert markdown.table([], []) == '|  |\n|'  # a table of nothing, as reports wrote it
    frame = pd.DataFrame([{'optimizer.learning_rate': 0.05, 'accuracy': stats.mean_interval(
        [0.9, 0.92]), 'var': 2.0, 'missing': math.nan, 'one': stats.mean_interval([0.9]),
        'seeds': 2}])
    # Config values as they are, other floats to 4 decimals, intervals as intervals.
    assert markdown.frame(frame, ['optimizer.learning_rate']).splitlines()[2] == (
        '| 0.05 | 0.9100 [0.7829, 1.0371] | 2.0000 | - | 0.9000 (1 seed, no interval) | 2 |')


def test_an_empty_sweep_dir_is_an_error(tmp_path):
    with pytest.raises(errors.ConfigError, match='holds no run records'):
        report.write_report(str(tmp_path))


def test_the_verdict_names_the_winner_on_the_shared_seeds():
    """a ranks first on its own 4 seeds, but on the 2 seeds both completed b is better."""
    per_option = {'a': pd.Series([0.5, 0.5, 0.99, 0.99], index=[0, 1, 2, 3]),
                  'b': pd.Series([0.6, 0.61], index=[0, 1])}
    family = answer.Family([answer.Comparison('w', 'a', per_option['a'], 'b',
                                              per_option['b'])], margin=0.005)
    (line,) = findings.verdict(per_option, family.within('w'))
    assert line.startswith('a - b = -10.50 points, 95% CI [-16.'), line
    assert line.endswith('over 2 seeds: b better.'), line


def test_the_percentile_figure_takes_the_last_activation_of_the_forward_pass():
    layers = ['act_conv1', 'act_conv2', 'act_fc1']  # the order diagnostics rows come in
    assert max(layers, key=figures.forward_position) == 'act_fc1'
    assert max(['act_fc2', 'act_fc10', 'act_fc3'], key=figures.forward_position) == 'act_fc10'
