"""Tuned comparisons (bn_study.studies.tuning): stage 1 until it is finished, the choice on
mean validation accuracy, the comparison looks, the refusals, and a whole tuned sweep through
the runner; training is faked by writing real records from each run's config."""

import gc
import json
import os
import shutil

import pandas as pd
import pytest

from bn_study import cli, errors, records
from bn_study.studies import declare, runner, sweep_index, tuning
from bn_study.training import run_record
from configs import default

MARGIN = 0.005  # the study's equivalence margin: half a point of accuracy
OPTIONS = {'A': {'model.bn_position': 'before_act'}, 'B': {'model.bn_position': 'after_act'}}
LRS = (0.025, 0.05, 0.1)
TUNING_SEEDS = (0, 1)
COMPARISON_SEEDS = (10, 11, 12, 13, 14, 15)
LOOKS = (3, 6)

# Stage 1's final validation accuracy per (position, learning rate), one per tuning seed.
# A is best at 0.1 on the mean (0.90), though its best single seed is at 0.05 (0.97, mean
# 0.84); B is best at 0.05 (0.91).
VAL = {('before_act', 0.025): (0.80, 0.80), ('before_act', 0.05): (0.97, 0.71),
       ('before_act', 0.1): (0.90, 0.90),
       ('after_act', 0.025): (0.86, 0.86), ('after_act', 0.05): (0.92, 0.90),
       ('after_act', 0.1): (0.88, 0.88)}
CHOSEN = {'A': {'optimizer.learning_rate': 0.1}, 'B': {'optimizer.learning_rate': 0.05}}


@pytest.fixture(autouse=True)
def no_collect_in_holm(monkeypatch):
    """statsmodels' Holm correction (decide.holm) calls gc.collect(): half a second a look
    once TensorFlow (the record writer's TensorBoard) is loaded; it changes no result."""
    monkeypatch.setattr(gc, 'collect', lambda *args: 0)


def make_tuning(**changes) -> tuning.Tuning:
    return tuning.Tuning(**{'options': OPTIONS, 'grid': {'optimizer.learning_rate': LRS},
                            'tuning_seeds': TUNING_SEEDS, 'comparison_seeds': COMPARISON_SEEDS,
                            'looks': LOOKS, **changes})


def outcomes(val=None, diffs=(0.0,) * 6, diverged=(), failed=()):
    """A run's (status, validation accuracy, test accuracy) from its config: stage 1 from
    `val`; on comparison seed i, A's test accuracy is 0.9 + diffs[i] and B's 0.9. `diverged`
    and `failed` hold (position, rate, seed) triples."""
    val = VAL if val is None else val

    def outcome(config):
        key = (config.model.bn_position, config.optimizer.learning_rate)
        if (*key, config.seed) in diverged:
            return records.DIVERGED, None, None
        if (*key, config.seed) in failed:
            return records.FAILED, None, None
        if config.seed in TUNING_SEEDS:
            accuracy = val[key][TUNING_SEEDS.index(config.seed)]
            return records.COMPLETE, accuracy, accuracy - 0.01
        diff = diffs[COMPARISON_SEEDS.index(config.seed)] if key[0] == 'before_act' else 0.0
        return records.COMPLETE, 0.9, 0.9 + diff
    return outcome


def write_record(workdir, config, status, val_accuracy, test_accuracy):
    """One run's record, written by training's record writer as training writes it."""
    record = run_record.RunRecord(workdir)
    record.start(config, None)
    if status == records.COMPLETE:
        summary = {'status': status, 'final_val_accuracy': val_accuracy,
                   'final_val_loss': 1 - val_accuracy, 'final_test_accuracy': test_accuracy,
                   'final_test_loss': 1 - test_accuracy, 'initial_val_loss': 2.3}
    elif status == records.DIVERGED:
        summary = {'status': status, 'diverged_at_step': 7, 'epochs_completed': 0}
    else:
        summary = {'status': status, 'error': 'OSError: disk full'}
    record.finish(summary)


def write_runs(sweep_dir, sweep, outcome):
    for overrides in sweep:
        config = declare.apply_overrides(default.get_config(), overrides)
        write_record(os.path.join(sweep_dir, declare.run_name(overrides)), config,
                     *outcome(config))


def fake_train(outcome, trained):
    """A runner's train_group that records each run from its config, noting its name."""
    def train_group(group):
        for run in group:
            trained.append(run.name)
            write_record(run.workdir, run.config, *outcome(run.config))
    return train_group


def stage2(chosen, seeds):
    return [{**OPTIONS[name], **point, 'seed': seed}
            for name, point in chosen.items() for seed in seeds]


def state_text(sweep_dir):
    path = os.path.join(sweep_dir, tuning.TUNING_FILE)
    with open(path) as f:
        return f.read()


def has_state(sweep_dir):
    return os.path.exists(os.path.join(sweep_dir, tuning.TUNING_FILE))


# ---- Stage 1 until it is finished --------------------------------------------------------

def test_stage_1_alone_until_every_tuning_run_is_finished(tmp_path):
    t = make_tuning()
    sweep_dir = str(tmp_path)
    first = tuning.current_sweep(t, sweep_dir, MARGIN)
    assert len(first) == 2 * 3 * 2  # options x grid x tuning seeds
    assert first[0] == {'model.bn_position': 'before_act', 'optimizer.learning_rate': 0.025,
                        'seed': 0}
    assert first == [{**o, 'optimizer.learning_rate': lr, 'seed': s}
                     for o in OPTIONS.values() for lr in LRS for s in TUNING_SEEDS]
    assert os.listdir(sweep_dir) == []  # no tuning.json, nothing else either

    *done, last = first
    write_runs(sweep_dir, done, outcomes())
    config = declare.apply_overrides(default.get_config(), last)
    workdir = os.path.join(sweep_dir, declare.run_name(last))
    run_record.RunRecord(workdir).start(config, None)  # started, killed before its summary
    assert tuning.current_sweep(t, sweep_dir, MARGIN) == first
    write_runs(sweep_dir, [last], outcomes(failed={('after_act', 0.1, 1)}))
    assert records.read_summary(workdir)['status'] == records.FAILED
    assert tuning.current_sweep(t, sweep_dir, MARGIN) == first  # failed is not finished
    assert not has_state(sweep_dir)

    write_runs(sweep_dir, [last], outcomes())
    # --stage=tuning stops at stage 1 even once it is finished, and decides nothing.
    assert tuning.current_sweep(t, sweep_dir, MARGIN, stage='tuning') == first
    assert not has_state(sweep_dir)
    assert len(tuning.current_sweep(t, sweep_dir, MARGIN)) == 12 + 2 * 3


# ---- The choice ------------------------------------------------------------------------

def test_each_option_gets_its_best_mean_validation_point_and_stage_2_its_first_look(
        tmp_path):
    t = make_tuning()
    sweep_dir = str(tmp_path)
    write_runs(sweep_dir, tuning.tuning_sweep(t), outcomes())
    runs = tuning.current_sweep(t, sweep_dir, MARGIN)
    assert runs == tuning.tuning_sweep(t) + stage2(CHOSEN, (10, 11, 12))
    assert runs[12] == {'model.bn_position': 'before_act', 'optimizer.learning_rate': 0.1,
                        'seed': 10}
    state = tuning.read_state(sweep_dir)
    assert state == {'tuning': json.loads(json.dumps(t.to_json())), 'chosen': CHOSEN,
                     'looks_taken': 1}
    # Its choice is also what --stage=comparison gives now.
    assert tuning.current_sweep(t, sweep_dir, MARGIN, stage='comparison') == runs


def test_a_point_where_a_tuning_seed_diverged_is_never_chosen(tmp_path):
    t = make_tuning()
    sweep_dir = str(tmp_path)
    # B at 0.1: seed 1 has the top accuracy of the whole stage, seed 0 diverged.
    val = {**VAL, ('after_act', 0.1): (0.88, 0.999)}
    write_runs(sweep_dir, tuning.tuning_sweep(t),
               outcomes(val=val, diverged={('after_act', 0.1, 0)}))
    table = tuning.tuning_table(t, sweep_dir)
    failed = table[table['failed']]
    assert [(r.option, r.point) for r in failed.itertuples()] == [
        ('B', {'optimizer.learning_rate': 0.1})]
    assert tuning.current_sweep(t, sweep_dir, MARGIN)[12:] == stage2(CHOSEN, (10, 11, 12))
    assert tuning.read_state(sweep_dir)['chosen'] == CHOSEN


def test_an_option_whose_every_point_diverged_gets_none_and_no_comparison_runs(tmp_path):
    t = make_tuning()
    sweep_dir = str(tmp_path)
    diverged = {('after_act', lr, s) for lr in LRS for s in TUNING_SEEDS}
    write_runs(sweep_dir, tuning.tuning_sweep(t), outcomes(diverged=diverged))
    runs = tuning.current_sweep(t, sweep_dir, MARGIN)
    assert runs[12:] == stage2({'A': CHOSEN['A']}, (10, 11, 12))
    assert tuning.read_state(sweep_dir)['chosen'] == {'A': CHOSEN['A'], 'B': None}
    # A lone option has nothing to be compared with: its look is never extended.
    write_runs(sweep_dir, runs[12:], outcomes(diffs=(0.004, 0.006, 0.002, 0, 0, 0)))
    assert tuning.current_sweep(t, sweep_dir, MARGIN) == runs
    assert tuning.read_state(sweep_dir)['looks_taken'] == 1


@pytest.mark.parametrize('lrs, chosen', [((0.025, 0.05, 0.1), 0.05),
                                         ((0.1, 0.05, 0.025), 0.1)])
def test_a_tie_goes_to_the_first_point_in_grid_order(tmp_path, lrs, chosen):
    t = make_tuning(grid={'optimizer.learning_rate': lrs})
    sweep_dir = str(tmp_path)
    # A: 0.05 and 0.1 tie at exactly 0.9 (the same two values each).
    val = {**VAL, ('before_act', 0.05): (0.9, 0.9), ('before_act', 0.1): (0.9, 0.9)}
    write_runs(sweep_dir, tuning.tuning_sweep(t), outcomes(val=val))
    tuning.current_sweep(t, sweep_dir, MARGIN)
    assert tuning.read_state(sweep_dir)['chosen'] == {
        'A': {'optimizer.learning_rate': chosen}, 'B': CHOSEN['B']}


# ---- Looks -----------------------------------------------------------------------------

def _after_first_look(sweep_dir, diffs, t=None):
    """Stage 1 and the first look's comparison runs recorded; current_sweep's answer."""
    t = t or make_tuning()
    write_runs(sweep_dir, tuning.tuning_sweep(t), outcomes())
    runs = tuning.current_sweep(t, sweep_dir, MARGIN)
    write_runs(sweep_dir, runs[12:], outcomes(diffs=diffs))
    return t, runs


# Paired differences A - B on seeds 10-12 (accuracy units); every look is tested at
# 0.05 / 2 looks, with one comparison.
EXTENDS = {
    # 0.4 points, sd 0.22: inconclusive, needs 6 seeds (the last look exactly).
    'needs 6': (0.0018, 0.004, 0.0062),
    # 0.4 points, sd 0.15: p = 0.044 would be 'better' at 0.05, not at 0.025; needs 4.
    'needs 4 (Bonferroni)': (0.0025, 0.004, 0.0055),
}
STAYS = {
    'decided (2 points better)': (0.02, 0.022, 0.018),
    'decided (equivalent)': (0.001, 0.001, 0.001),
    # 0.4 points, sd 0.26: inconclusive, would need 7 seeds; 6 cannot decide it.
    'needs 7': (0.0014, 0.004, 0.0066),
    # equal means, spread 5 points: equivalence would need ~1000 seeds.
    'undecidable': (0.05, -0.05, 0.0),
}


@pytest.mark.parametrize('diffs', EXTENDS.values(), ids=EXTENDS.keys())
def test_an_inconclusive_look_that_the_last_look_could_decide_adds_its_seeds(tmp_path,
                                                                           diffs):
    sweep_dir = str(tmp_path)
    t, runs = _after_first_look(sweep_dir, diffs)
    extended = tuning.current_sweep(t, sweep_dir, MARGIN)
    assert extended == runs[:12] + stage2(CHOSEN, COMPARISON_SEEDS)
    assert extended[-1] == {'model.bn_position': 'after_act', 'optimizer.learning_rate': 0.05,
                            'seed': 15}
    assert tuning.read_state(sweep_dir)['looks_taken'] == 2
    text = state_text(sweep_dir)
    assert tuning.current_sweep(t, sweep_dir, MARGIN) == extended  # idempotent
    assert state_text(sweep_dir) == text
    # The last look's runs done: there is no look after it, whatever they say.
    write_runs(sweep_dir, extended[18:], outcomes(diffs=diffs + (0.004, 0.0, 0.008)))
    assert tuning.current_sweep(t, sweep_dir, MARGIN) == extended
    assert state_text(sweep_dir) == text


@pytest.mark.parametrize('diffs', STAYS.values(), ids=STAYS.keys())
def test_a_decided_or_undecidable_look_adds_no_seeds(tmp_path, diffs):
    sweep_dir = str(tmp_path)
    t, runs = _after_first_look(sweep_dir, diffs)
    text = state_text(sweep_dir)
    assert tuning.current_sweep(t, sweep_dir, MARGIN) == runs
    assert tuning.read_state(sweep_dir)['looks_taken'] == 1
    assert tuning.current_sweep(t, sweep_dir, MARGIN) == runs  # idempotent
    assert state_text(sweep_dir) == text


def test_a_look_is_judged_only_once_all_its_runs_are_finished(tmp_path):
    sweep_dir = str(tmp_path)
    t = make_tuning()
    write_runs(sweep_dir, tuning.tuning_sweep(t), outcomes())
    runs = tuning.current_sweep(t, sweep_dir, MARGIN)
    write_runs(sweep_dir, runs[12:-1], outcomes(diffs=EXTENDS['needs 6']))
    assert tuning.current_sweep(t, sweep_dir, MARGIN) == runs
    assert tuning.read_state(sweep_dir)['looks_taken'] == 1
    write_runs(sweep_dir, runs[-1:], outcomes(diffs=EXTENDS['needs 6']))
    assert len(tuning.current_sweep(t, sweep_dir, MARGIN)) == 12 + 2 * 6


def test_without_looks_every_comparison_seed_comes_at_once(tmp_path):
    t = make_tuning(looks=())
    write_runs(str(tmp_path), tuning.tuning_sweep(t), outcomes())
    assert tuning.current_sweep(t, str(tmp_path), MARGIN)[12:] == stage2(CHOSEN,
                                                                         COMPARISON_SEEDS)


# ---- Bad input ---------------------------------------------------------------------------

BAD = {
    'one option': ({'options': {'A': OPTIONS['A']}}, 'needs two or more options'),
    'empty grid': ({'grid': {}}, 'the tuning grid is empty'),
    'grid key without values': ({'grid': {'optimizer.learning_rate': ()}},
                                'the tuning grid is empty'),
    'overlapping seeds': ({'comparison_seeds': (1, 2, 3, 4, 5, 6)},
                          r'comparison seeds overlap tuning seeds \(1\)'),
    'repeated seed': ({'tuning_seeds': (0, 0)}, r'tuning_seeds=\(0, 0\) must be one or more '
                                                'distinct seeds'),
    'looks short of all seeds': ({'looks': (3, 5)}, r'looks=\(3, 5\) must increase from at '
                                                    'least 2 seeds to all 6 comparison seeds'),
    'looks decreasing': ({'looks': (6, 3)}, r'looks=\(6, 3\) must increase'),
    'look of one seed': ({'looks': (1, 6)}, r'looks=\(1, 6\) must increase from at least 2'),
    'option sets a tuned key': (
        {'options': {'A': {'optimizer.learning_rate': 0.1}, 'B': OPTIONS['B']}},
        "option 'A' sets the tuned key 'optimizer.learning_rate'; a key is either compared "
        'or tuned'),
    'seed tuned': ({'grid': {'optimizer.learning_rate': LRS, 'seed': (0, 1)}},
                   'seed is neither compared nor tuned'),
    'tolerance zero': ({'tolerance': 0.0}, 'tolerance=0.0 must be positive'),
    'pair naming no option': ({'pairs': (('A', 'C'),)}, r"pair \('A', 'C'\) is not two "
                              r"different options \('C' is none\); the options: A, B"),
    'pair of one option': ({'pairs': (('A', 'A'),)}, 'is not two different options'),
    'pair twice': ({'pairs': (('A', 'B'), ('B', 'A'))}, 'pairs lists a pair twice'),
}


@pytest.fixture(scope='module')
def finished_stage_1(tmp_path_factory):
    """A sweep dir whose stage 1 is finished and has no tuning.json yet (copy it to use)."""
    sweep_dir = str(tmp_path_factory.mktemp('finished_stage_1'))
    write_runs(sweep_dir, tuning.tuning_sweep(make_tuning()), outcomes())
    return sweep_dir


def _copy(source, tmp_path):
    sweep_dir = str(tmp_path / 'sweep')
    shutil.copytree(source, sweep_dir)
    return sweep_dir


def _one_line(excinfo):
    assert '\n' not in str(excinfo.value)


@pytest.mark.parametrize('changes, message', BAD.values(), ids=BAD.keys())
def test_a_bad_declaration_is_refused_in_one_line_and_nothing_is_written(
        tmp_path, finished_stage_1, changes, message):
    # Refused on an empty sweep dir, and on one where stage 1 is finished (where the
    # choice would be written if the check came late).
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(errors.ConfigError, match=message) as excinfo:
        tuning.current_sweep(make_tuning(**changes), str(empty), MARGIN)
    _one_line(excinfo)
    assert os.listdir(empty) == []
    sweep_dir = _copy(finished_stage_1, tmp_path)
    before = sorted(os.listdir(sweep_dir))
    with pytest.raises(errors.ConfigError, match=message):
        tuning.current_sweep(make_tuning(**changes), sweep_dir, MARGIN)
    assert sorted(os.listdir(sweep_dir)) == before and not has_state(sweep_dir)


def test_an_unknown_stage_is_refused_with_the_stages(tmp_path, finished_stage_1):
    sweep_dir = _copy(finished_stage_1, tmp_path)
    with pytest.raises(errors.ConfigError, match='--stage=compare is no stage; choose one of: '
                                                 'all, tuning, comparison') as excinfo:
        tuning.current_sweep(make_tuning(), sweep_dir, MARGIN, stage='compare')
    _one_line(excinfo)
    assert not has_state(sweep_dir)


def test_the_comparison_stage_is_refused_while_stage_1_is_unfinished(tmp_path,
                                                                     finished_stage_1):
    sweep_dir = _copy(finished_stage_1, tmp_path)
    os.remove(os.path.join(sweep_dir, declare.run_name(tuning.tuning_sweep(make_tuning())[5]),
                           records.SUMMARY_FILE))
    before = sorted(os.listdir(sweep_dir))
    with pytest.raises(errors.WorkdirError, match='stage 1 \\(tuning\\) is not finished, so '
                                                  'stage 2 \\(comparison\\) cannot start') as e:
        tuning.current_sweep(make_tuning(), sweep_dir, MARGIN, stage='comparison')
    _one_line(e)
    assert sorted(os.listdir(sweep_dir)) == before and not has_state(sweep_dir)
    with pytest.raises(errors.WorkdirError, match='stage 1 \\(tuning\\) is not finished'):
        tuning.current_sweep(make_tuning(), str(tmp_path / 'new'), MARGIN, stage='comparison')
    assert not (tmp_path / 'new').exists()


# ---- A study file, through the runner ----------------------------------------------------

STUDY = """
from bn_study.analysis import report_spec
from bn_study.studies import tuning
from configs import default
def get_config(arg=None):
    return default.get_config()
def get_tuning(arg=None):
    return tuning.Tuning(**{tuning!r})
def get_report(arg=None):
    return report_spec.ReportSpec(margin={margin!r}, effects=tuple(
        report_spec.Effect(*cell) for cell in {effects!r}))
"""


def study(tmp_path, margin=MARGIN, stage='all', effects=(), **changes) -> runner.Study:
    kwargs = {'options': OPTIONS, 'grid': {'optimizer.learning_rate': LRS},
              'tuning_seeds': TUNING_SEEDS, 'comparison_seeds': COMPARISON_SEEDS,
              'looks': LOOKS, **changes}
    path = tmp_path / 'study.py'
    path.write_text(STUDY.format(tuning=kwargs, margin=margin, effects=tuple(effects)))
    module, _ = cli.config_module(str(path))
    return runner.Study(str(path), module.get_config(), str(tmp_path / 'sweep'), stage=stage)


def test_the_runner_expands_a_tuned_study_stage_by_stage(tmp_path):
    s = study(tmp_path)
    runs = runner.expand(s)
    assert [run.overrides for run in runs] == tuning.tuning_sweep(make_tuning())
    assert runs[0].config.model.bn_position == 'before_act' and runs[0].config.seed == 0
    assert runs[0].workdir == os.path.join(s.sweep_dir, runs[0].name)
    assert not os.path.exists(s.sweep_dir)
    write_runs(s.sweep_dir, tuning.tuning_sweep(make_tuning()), outcomes())
    runs = runner.expand(s)
    assert [run.overrides for run in runs[12:]] == stage2(CHOSEN, (10, 11, 12))
    assert runs[12].config.optimizer.learning_rate == 0.1 and runs[12].config.seed == 10


@pytest.mark.parametrize('case, error, message', [
    ('unknown grid key', errors.ConfigError,
     "sweep key 'optimizer.lr': config.optimizer has no key 'lr'"),
    ('margin zero', errors.ConfigError, 'the equivalence margin 0 is not positive'),
    ('comparison before tuning', errors.WorkdirError, 'stage 1 \\(tuning\\) is not finished'),
    ('effect cell not decided', errors.ConfigError,
     r"effect cell \(norm, here\): the pair \('B', 'A'\) is not one the tuned comparison "
     'decides; declare it in Tuning.pairs'),
    ('tuning stage of a fixed sweep', errors.ConfigError,
     '--stage=tuning applies to tuned studies only; .* defines no get_tuning\\(\\)'),
])
def test_the_runner_refuses_a_bad_tuned_study_before_anything_is_written(tmp_path, case,
                                                                         error, message):
    if case == 'unknown grid key':
        s = study(tmp_path, grid={'optimizer.lr': (0.1,)})
    elif case == 'margin zero':
        s = study(tmp_path, margin=0)
    elif case == 'comparison before tuning':
        s = study(tmp_path, stage='comparison')
    elif case == 'effect cell not decided':  # every pair is decided as (A, B), not (B, A)
        s = study(tmp_path, effects=[('norm', 'here', 'B', 'A')])
    else:
        path = tmp_path / 'fixed.py'
        path.write_text('from configs.default import get_config\n'
                        'def get_sweep(arg=None):\n    return [{"seed": 0}, {"seed": 1}]\n')
        s = runner.Study(str(path), default.get_config(), str(tmp_path / 'sweep'),
                         stage='tuning')
    with pytest.raises(error, match=message) as excinfo:
        runner.expand(s)
    _one_line(excinfo)
    with pytest.raises(error, match=message):
        runner.sweep(s, report=False, train_group=fake_train(outcomes(), []))
    assert not os.path.exists(s.sweep_dir)


# ---- A changed declaration --------------------------------------------------------------

CHANGED = {
    'tolerance': {'tolerance': 0.02},
    'grid narrowed (same records)': {'grid': {'optimizer.learning_rate': (0.05, 0.1)}},
    'options renamed': {'options': {'X': OPTIONS['A'], 'Y': OPTIONS['B']}},
    'looks': {'looks': (2, 6)},
    'comparison seeds': {'comparison_seeds': (20, 21, 22, 23, 24, 25)},
}


@pytest.mark.parametrize('changes', CHANGED.values(), ids=CHANGED.keys())
def test_a_declaration_changed_after_the_choice_is_refused(tmp_path, finished_stage_1,
                                                           changes):
    sweep_dir = _copy(finished_stage_1, tmp_path)
    tuning.current_sweep(make_tuning(), sweep_dir, MARGIN)
    text = state_text(sweep_dir)
    before = sorted(os.listdir(sweep_dir))
    with pytest.raises(errors.WorkdirError, match='tuning.json records another declaration '
                                                  'than the study gives now') as excinfo:
        tuning.current_sweep(make_tuning(**changes), sweep_dir, MARGIN)
    _one_line(excinfo)
    assert state_text(sweep_dir) == text and sorted(os.listdir(sweep_dir)) == before


def test_stage_1_records_changed_under_the_choice_are_refused(tmp_path, finished_stage_1):
    sweep_dir = _copy(finished_stage_1, tmp_path)
    tuning.current_sweep(make_tuning(), sweep_dir, MARGIN)
    # B at 0.1 rerun (say) and now best: the recorded choice no longer follows.
    write_runs(sweep_dir, [{**OPTIONS['B'], 'optimizer.learning_rate': 0.1, 'seed': s}
                           for s in TUNING_SEEDS],
               outcomes(val={**VAL, ('after_act', 0.1): (0.95, 0.95)}))
    with pytest.raises(errors.WorkdirError, match='records another choice than the stage 1 '
                                                  'records give now'):
        tuning.current_sweep(make_tuning(), sweep_dir, MARGIN)


# A declaration that adds stage 1 runs (a grid value, a tuning seed) once tuning.json exists
# is refused at once, under --stage=tuning too, before anything more trains.
GROWN = {
    'grid value added': ({'grid': {'optimizer.learning_rate': LRS + (0.2,)}}, 'all'),
    'tuning seed added': ({'tuning_seeds': TUNING_SEEDS + (2,)}, 'all'),
    'grid value added, --stage=tuning': ({'grid': {'optimizer.learning_rate': LRS + (0.2,)}},
                                         'tuning'),
}


@pytest.mark.parametrize('changes, stage', GROWN.values(), ids=GROWN.keys())
def test_a_declaration_that_adds_stage_1_runs_after_the_choice_is_refused_at_once(
        tmp_path, finished_stage_1, changes, stage):
    sweep_dir = _copy(finished_stage_1, tmp_path)
    tuning.current_sweep(make_tuning(), sweep_dir, MARGIN)
    with pytest.raises(errors.WorkdirError, match='records another declaration'):
        tuning.current_sweep(make_tuning(**changes), sweep_dir, MARGIN, stage=stage)


# ---- A whole tuned sweep through the runner ---------------------------------------------

def test_one_sweep_call_runs_stage_1_then_stage_2_and_its_extension(tmp_path, capsys):
    s = study(tmp_path)
    trained = []
    outcome = outcomes(diffs=EXTENDS['needs 6'] + (0.004, 0.0, 0.008))
    assert runner.sweep(s, report=False, train_group=fake_train(outcome, trained)) == 0
    names = lambda sweep: [declare.run_name(o) for o in sweep]
    stage1 = names(tuning.tuning_sweep(make_tuning()))
    look1 = names(stage2(CHOSEN, (10, 11, 12)))
    look2 = names(stage2(CHOSEN, (13, 14, 15)))
    assert len(trained) == len(set(trained)) == 24  # every run trained once
    assert set(trained[:12]) == set(stage1)  # in stage order: each waits for the last
    assert set(trained[12:18]) == set(look1)
    assert set(trained[18:]) == set(look2)
    assert tuning.read_state(s.sweep_dir) == {
        'tuning': json.loads(json.dumps(make_tuning().to_json())), 'chosen': CHOSEN,
        'looks_taken': 2}
    assert sorted(sweep_index.read_manifest(s.sweep_dir)['runs']) == sorted(trained)
    assert 'runs: 24 ran, 0 skipped, 0 diverged, 0 failed' in capsys.readouterr().out

    trained.clear()
    assert runner.sweep(s, report=False, train_group=fake_train(outcome, trained)) == 0
    assert trained == []
    assert 'runs: 0 ran, 24 skipped, 0 diverged, 0 failed' in capsys.readouterr().out


def test_a_sweep_whose_first_look_decides_stops_there(tmp_path):
    s = study(tmp_path)
    trained = []
    outcome = outcomes(diffs=STAYS['decided (2 points better)'] + (0.02,) * 3)
    assert runner.sweep(s, report=False, train_group=fake_train(outcome, trained)) == 0
    assert sorted(trained) == sorted(declare.run_name(o) for o in tuning.tuning_sweep(
        make_tuning()) + stage2(CHOSEN, (10, 11, 12)))
    assert tuning.read_state(s.sweep_dir)['looks_taken'] == 1


def test_a_tuned_sweep_reports_its_answer_from_the_decisions(tmp_path):
    from bn_study.analysis import report
    s = study(tmp_path)
    outcome = outcomes(diffs=STAYS['decided (2 points better)'] + (0.02,) * 3)
    assert runner.sweep(s, report=False, train_group=fake_train(outcome, [])) == 0
    written = report.write_report(s.sweep_dir, str(tmp_path / 'report'))
    text = open(written.path).read()
    answer = text[text.index('## Answer'):text.index('## Stage 1')]
    # A (before_act) at its tuned 0.1 scores 0.9 + (0.02, 0.022, 0.018) on seeds 10-12.
    assert ('- **options at their tuned settings**: recommended **A** at its tuned setting '
            '(learning_rate=0.1): test accuracy 0.9200 [') in answer
    assert '  - better than: B.\n' in answer
    assert '(1 of 2 declared looks at 3, 6 seeds taken)' in answer
    # Wortsman's sensitivity on the mean validation losses (1 - accuracy here) with the loss
    # at initialization 2.3: A's 0.20, 0.16, 0.10 give mean(0.10, 0.06, 0) = 0.0533; B's
    # 0.14, 0.09, 0.12 give mean(0.05, 0, 0.03) = 0.0267. Within 1 point of the best
    # validation accuracy: only the chosen rate.
    assert '| A | learning_rate=0.1 | 0.9200 [' in answer
    assert '| 3 | 0.9000 | 0.0533 | 0.1 to 0.1 (1x) | 0 of 3 |' in answer
    assert '| 3 | 0.9100 | 0.0267 | 0.05 to 0.05 (1x) | 0 of 3 |' in answer
    assert '| A | learning_rate=0.1 | 0.9000 | 0.1000 |  | yes |' in text  # stage 1 table
    assert '| B | learning_rate=0.1 | 0.8800 | 0.1200 |  |  |' in text
    # One family of one pair, tested at 0.05 / 2 looks.
    assert 'This report decides 1 paired comparisons' in text
    assert 'every test is made at 0.05/2 = 0.0250' in text
    assert '| A | B | 2.00 | [' in text and '| A better |' in text
    assert written.verdict_lines[0] == 'Answer'
    assert os.path.exists(tmp_path / 'report' / 'tuning_sweep.png')


def test_options_of_several_keys_find_their_runs_again_from_tuning_json(tmp_path):
    """tuning.json keeps the declaration's order: an option's overrides, in their order,
    name its runs' directories, and the report finds the runs through the file (sorted keys
    put bn_on_output before bn_position and lost every run)."""
    options = {'A': {'model.bn_position': 'before_act', 'model.bn_on_output': False},
               'B': {'model.bn_position': 'after_act', 'model.bn_on_output': True}}
    plan = make_tuning(options=options)
    sweep_dir = str(tmp_path)
    write_runs(sweep_dir, tuning.tuning_sweep(plan), outcomes())
    tuning.current_sweep(plan, sweep_dir, MARGIN)
    again = tuning.Tuning.from_json(tuning.read_state(sweep_dir)['tuning'])
    assert tuning.tuning_sweep(again) == tuning.tuning_sweep(plan)
    assert tuning.tuning_table(again, sweep_dir) is not None  # every stage 1 run found


def test_declared_pairs_are_the_ones_decided_in_their_order():
    three = {**OPTIONS, 'C': {'model.bn_position': 'none'}}
    per_option = {name: pd.Series([0.9, 0.91], index=[10, 11]) for name in three}
    every = tuning.compared_pairs(make_tuning(options=three), per_option)
    assert [(a, b) for a, _, b, _ in every] == [('A', 'B'), ('A', 'C'), ('B', 'C')]
    declared = make_tuning(options=three, pairs=(('C', 'A'), ('B', 'C')))
    assert [(a, b) for a, _, b, _ in tuning.compared_pairs(declared, per_option)] == [
        ('C', 'A'), ('B', 'C')]
    # An option that was not compared (it diverged at every setting) drops its pairs.
    del per_option['B']
    assert [(a, b) for a, _, b, _ in tuning.compared_pairs(declared, per_option)] == [
        ('C', 'A')]


def test_pairs_round_trip_and_an_undeclared_one_leaves_tuning_json_as_before():
    assert 'pairs' not in make_tuning().to_json()  # tuning.json files from before still match
    declared = make_tuning(pairs=(('B', 'A'),))
    assert tuning.Tuning.from_json(json.loads(json.dumps(declared.to_json()))) == declared


def test_a_tuned_sweep_with_effect_cells_answers_from_them(tmp_path):
    from bn_study.analysis import report
    s = study(tmp_path, effects=[('before_act', 'against after_act', 'A', 'B')])
    outcome = outcomes(diffs=STAYS['decided (2 points better)'] + (0.02,) * 3)
    assert runner.sweep(s, report=False, train_group=fake_train(outcome, [])) == 0
    text = open(report.write_report(s.sweep_dir, str(tmp_path / 'report')).path).read()
    answer = text[text.index('## Answer'):text.index('## Stage 1')]
    assert 'recommended' not in answer  # the cells, not a ranking, answer it
    assert ('- **before_act**: better with it in 1 of 1 (against after_act: 2.00 [' in answer)
    assert '- Carries the effect (better with it somewhere, worse nowhere): before_act.' in answer
    assert '|  | against after_act |' in answer  # the table of cells
    assert '| before_act | 2.00 [' in answer
