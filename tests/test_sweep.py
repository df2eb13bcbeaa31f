"""Sweeps as data: declaration, names, the checks before anything runs, what a rerun does
with each run, the index under concurrent writers, and the launchers' exact commands."""

import multiprocessing
import os
import subprocess

import numpy as np
import pytest

from bn_study import errors, records
from bn_study.analysis import report_spec, results
from bn_study.studies import declare, launch, runner, sweep_index
from bn_study.training import run_record
from configs import default


def test_product_and_zip_read_like_the_design():
    grid = declare.product({'model.bn_position': ('none', 'after_act')},
                         declare.zipped({'batch_size': (32, 128),
                                       'optimizer.learning_rate': (0.0125, 0.05)}),
                         {'seed': range(2)})
    assert len(grid) == 2 * 2 * 2
    assert grid[0] == {'model.bn_position': 'none', 'batch_size': 32,
                       'optimizer.learning_rate': 0.0125, 'seed': 0}
    assert grid[-1] == {'model.bn_position': 'after_act', 'batch_size': 128,
                        'optimizer.learning_rate': 0.05, 'seed': 1}
    assert [declare.run_name(o) for o in grid[:2]] == [
        'model.bn_position-none__batch_size-32__optimizer.learning_rate-0.0125__seed-0',
        'model.bn_position-none__batch_size-32__optimizer.learning_rate-0.0125__seed-1']
    with pytest.raises(errors.ConfigError, match='need equally many values'):
        declare.zipped({'a': (1, 2), 'b': (1,)})
    with pytest.raises(errors.ConfigError, match="'seed' appears in two parts"):
        declare.product({'seed': (0, 1)}, {'seed': (2,)})


def test_run_names_are_readable_and_safe_as_directories():
    assert declare.run_name({}) == 'base'
    assert declare.run_name({'eval.stats': ('ema', 'precise'), 'data.name': 'a/b c'}) == (
        'eval.stats-ema,precise__data.name-a_b_c')


def test_expand_builds_each_config_and_workdir(tmp_path):
    runs = declare.expand(default.get_config(), [{'model.bn_position': 'after_act', 'seed': 3},
                                              {'eval.stats': ['ema', 'batch']}], str(tmp_path))
    assert runs[0].config.model.bn_position == 'after_act' and runs[0].config.seed == 3
    assert runs[1].config.eval.stats == ('ema', 'batch')  # lists become the config's tuples
    assert runs[0].workdir == str(tmp_path / 'model.bn_position-after_act__seed-3')
    assert declare.select(runs, [runs[1].name]) == [runs[1]]
    with pytest.raises(errors.ConfigError, match='not a run of this sweep; nearest: '
                                                  'model.bn_position-after_act__seed-3'):
        declare.select(runs, ['model.bn_position-after_act__seed-4'])


@pytest.mark.parametrize('grid, message', [
    ([], 'the sweep is empty'),
    ([{'model.bn_place': 'none'}],
     "sweep key 'model.bn_place': config.model has no key 'bn_place'; nearest: "
     'model.bn_position'),
    ([{'learning_rate': 0.1}], "config has no key 'learning_rate'; nearest: "
                               'optimizer.learning_rate'),
    ([{'seed': 1}, {'seed': '1'}], "two runs would share the workdir 'seed-1'"),
    ([{'model.bn_position': 'after_relu'}], "'after_relu' is not valid for model simple_cnn"),
])
def test_bad_sweeps_fail_before_anything_is_written(tmp_path, grid, message):
    with pytest.raises(errors.ConfigError, match=message):
        declare.expand(default.get_config(), grid, str(tmp_path / 'sweep'))
    assert not (tmp_path / 'sweep').exists()


def test_a_sweep_dir_with_conflicting_runs_is_refused(tmp_path):
    base = default.get_config()
    runs = declare.expand(base, [{'seed': s} for s in range(3)], str(tmp_path))
    for run in runs[:2]:  # another sweep's runs of the same names, with 3 epochs
        os.makedirs(run.workdir)
        other = declare.apply_overrides(run.config, {'num_epochs': 3})
        (tmp_path / run.name / records.CONFIG_FILE).write_text(other.to_json())
    with pytest.raises(errors.WorkdirError, match=r'seed-0 \(differs in: num_epochs\) and 1 '
                                                  'more; use a new --sweep_dir'):
        declare.check_sweep_dir(runs, str(tmp_path))
    sweep_index.record_sweep(str(tmp_path), base, runs)
    with pytest.raises(errors.WorkdirError, match=r'another sweep \(its base config differs '
                                                  r'in: batch_size\)'):
        sweep_index.record_sweep(str(tmp_path), declare.apply_overrides(base, {'batch_size': 64}),
                                 runs)


def _finish(run, **summary):
    record = run_record.RunRecord(run.workdir)
    record.start(run.config, resume_step=None)
    record.finish(summary)


def test_next_action_says_what_a_rerun_does_and_why(tmp_path):
    runs = declare.expand(default.get_config(), [{'seed': s} for s in range(6)], str(tmp_path))
    _finish(runs[0], status=records.COMPLETE, final_test_accuracy=0.97)
    _finish(runs[1], status=records.DIVERGED, diverged_at_step=12)
    _finish(runs[2], status=records.FAILED, error='OSError: disk full')
    _finish(runs[3], status=records.FAILED, error='OSError: disk full')
    os.makedirs(os.path.join(runs[3].workdir, 'checkpoints', '500'))
    run_record.RunRecord(runs[4].workdir).start(runs[4].config, resume_step=None)  # killed early
    assert [declare.next_action(run) for run in runs] == [
        (declare.SKIP, 'complete (test accuracy 0.9700)'),
        (declare.SKIP, 'diverged at step 12'),
        (declare.START, 'again: it failed with no checkpoint (OSError: disk full)'),
        (declare.RESUME, 'checkpoint at step 500 after it failed (OSError: disk full)'),
        (declare.START, 'again: an earlier attempt stopped before its first checkpoint'),
        (declare.START, 'new')]
    plan = [(run, *declare.next_action(run)) for run in runs]
    assert declare.describe_plan(plan)[0] == 'skip   seed-0: complete (test accuracy 0.9700)'
    assert declare.describe_plan(plan)[-1] == ('would start 3, resume 1, skip 2 of 6 runs; '
                                             'nothing was written')


def _add_and_finish(sweep_dir: str, runs: list, rounds: int) -> None:
    """A worker: adds its runs to the manifest one by one, finishes each, and rewrites the
    index after each (the manifest is read-modify-write: unlocked, additions get lost)."""
    for run in runs:
        sweep_index.record_sweep(sweep_dir, default.get_config(), [run])
        os.makedirs(run.workdir, exist_ok=True)
        run_record.RunRecord(run.workdir).finish({'status': records.COMPLETE,
                                               'final_test_accuracy': 0.5})
        for _ in range(rounds):
            sweep_index.update_index(sweep_dir)


@pytest.mark.filterwarnings('ignore:os.fork')
def test_the_manifest_and_index_stay_whole_under_concurrent_writers(tmp_path):
    sweep_dir = str(tmp_path)
    runs = declare.expand(default.get_config(), [{'seed': s} for s in range(16)], sweep_dir)
    sweep_index.record_sweep(sweep_dir, default.get_config(), [])
    sweep_index.update_index(sweep_dir)
    # fork: the writers only touch files, and spawn would re-import JAX in each (20 s).
    context = multiprocessing.get_context('fork')
    writers = [context.Process(target=_add_and_finish, args=(sweep_dir, runs[i::4], 3))
               for i in range(4)]
    for writer in writers:
        writer.start()
    reads = 0
    while any(w.is_alive() for w in writers) or reads < 3:
        rows = sweep_index.read_index(sweep_dir)  # a reader never sees a partial table
        assert {r['run'] for r in rows} <= {r.name for r in runs}
        assert {r['status'] for r in rows} <= {sweep_index.PENDING, records.COMPLETE}
        reads += 1
    assert all(w.join() or w.exitcode == 0 for w in writers)
    assert sorted(sweep_index.read_manifest(sweep_dir)['runs']) == sorted(r.name for r in runs)
    rows = sweep_index.read_index(sweep_dir)  # the last writer saw every record
    assert [r['status'] for r in rows] == [records.COMPLETE] * 16
    assert not [p for p in os.listdir(sweep_dir) if p.endswith('.tmp')]


def test_in_process_runs_count_diverged_apart_and_record_early_failures(tmp_path):
    grid = [{'optimizer.learning_rate': lr} for lr in (0.1, 10.0, 0.2)]
    runs = declare.expand(default.get_config(), grid, str(tmp_path))
    sweep_index.record_sweep(str(tmp_path), default.get_config(), runs)

    def fake_train(group):
        for run in group:
            lr = run.config.optimizer.learning_rate
            if lr == 0.2:
                raise errors.ConfigError('dataset not prepared')  # before any record
            _finish(run, **({'status': records.DIVERGED, 'diverged_at_step': 3} if lr > 1
                            else {'status': records.COMPLETE, 'final_test_accuracy': 0.9}))
    counts = launch.run_in_process([[run] for run in runs], str(tmp_path), fake_train)
    assert dict(counts) == {'ran': 1, 'diverged': 1, 'failed': 1}
    assert records.read_summary(runs[2].workdir)['error'] == 'ConfigError: dataset not prepared'
    rows = {r['run']: r for r in sweep_index.read_index(str(tmp_path))}
    assert [rows[r.name]['status'] for r in runs] == ['complete', 'diverged', 'failed']
    assert rows[runs[1].name]['optimizer.learning_rate'] == '10.0'
    table = results.placement_table(results.load_runs(str(tmp_path)))
    assert table.loc[10.0, ['seeds', 'diverged', 'not_complete']].tolist() == [0, 1, 1]
    assert np.isnan(table.loc[10.0, 'mean']) and table.loc[0.1, 'mean'] == 0.9


def test_worker_shares_split_cores_and_gpus():
    shares = launch.WorkerShares(workers=2, cores=1, gpus=2)
    available = sorted(os.sched_getaffinity(0))
    assert shares.cores_of(1) == [available[1 % len(available)]]
    assert shares.env_of(1)['CUDA_VISIBLE_DEVICES'] == '2,3'
    assert launch.WorkerShares(2).env_of(0).get('CUDA_VISIBLE_DEVICES') == os.environ.get(
        'CUDA_VISIBLE_DEVICES')  # 0 GPUs per worker: left as it is


INVOCATION = launch.Invocation('configs/seed_question.py:cpu', ('--config.num_epochs=2',),
                               'gs://bucket/seed question')


def test_tpu_launcher_runs_each_run_on_every_worker_of_the_tpu_vm():
    command = launch.tpu_command(INVOCATION, ['seed-0'], 'my-v4-32', 'us-central2-b',
                                 '~/bn_study', 'python3')
    assert command == [
        'gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'my-v4-32', '--zone', 'us-central2-b',
        '--worker=all', '--command',
        "cd '~/bn_study' && python3 -m bn_study.studies.worker "
        "--config=configs/seed_question.py:cpu "
        "'--sweep_dir=gs://bucket/seed question' --run=seed-0 --multihost_auto "
        '--config.num_epochs=2']
    with pytest.raises(errors.ConfigError, match='is not a gs:// bucket'):
        launch.check_cloud_sweep_dir('/tmp/sweep')
    with pytest.raises(errors.ConfigError, match='outside the repository'):
        launch.remote_config_spec('/tmp/study.py')


def test_tpu_launcher_goes_on_after_a_failed_run(tmp_path, monkeypatch):
    """run_on_tpu with gcloud replaced: each run's command, in order, and a run whose
    gcloud call failed (no summary) counted as failed."""
    runs = declare.expand(default.get_config(), [{'seed': 0}, {'seed': 1}], str(tmp_path))
    sweep_index.record_sweep(str(tmp_path), default.get_config(), runs)
    invocation = launch.Invocation('configs/default.py', (), str(tmp_path))
    called = []

    def fake_gcloud(command, check):
        called.append(command)
        if '--run=seed-0' in command[-1]:
            _finish(runs[0], status=records.COMPLETE, final_test_accuracy=0.9)
            return subprocess.CompletedProcess(command, 0)
        return subprocess.CompletedProcess(command, 255)  # ssh failed, nothing written
    monkeypatch.setattr(launch.subprocess, 'run', fake_gcloud)
    counts = launch.run_on_tpu([[r] for r in runs], invocation, 'tpu', 'zone', 'repo', 'py')
    assert dict(counts) == {'ran': 1, 'failed': 1}
    assert called == [launch.tpu_command(invocation, [r.name], 'tpu', 'zone', 'repo', 'py')
                      for r in runs]


def test_print_mode_gives_one_command_per_run():
    groups = [[declare.Run('seed-0', {}, None, '')], [declare.Run('seed-1', {}, None, '')]]
    assert launch.scheduler_commands(groups, INVOCATION, 'python') == [
        f"python -m bn_study.studies.worker --config=configs/seed_question.py:cpu "
        f"'--sweep_dir=gs://bucket"
        f"/seed question' --run=seed-{i} --config.num_epochs=2" for i in range(2)]


def test_the_seed_study_tunes_each_option_then_compares_them(tmp_path):
    from bn_study.studies import tuning
    from configs import seed_question
    base = seed_question.get_config()
    plan = seed_question.get_tuning()
    tuning.check(plan)
    runs = declare.expand(base, tuning.current_sweep(plan, str(tmp_path), 0.005), str(tmp_path))
    assert len(runs) == 6 * 3  # stage 1 only: options x learning rates x one tuning seed
    assert runs[0].name == ('model.bn_position-none__model.bn_on_output-False__'
                            'optimizer.learning_rate-0.03__seed-100')
    assert runs[-1].config.model.bn_position == 'airbench'  # a preset, by its name
    assert runs[-1].config.optimizer.learning_rate == 0.3
    decisive = seed_question.get_tuning('decisive')
    tuning.check(decisive)
    assert decisive.seed_looks() == (5, 10, 20) and len(decisive.tuning_seeds) == 2
    with pytest.raises(errors.ConfigError, match='no variant; choose one of'):
        seed_question.get_tuning('outputbn')


def test_the_placement_ablation_isolates_one_layer_per_decided_pair(tmp_path):
    from bn_study.nn import placement
    from bn_study.studies import tuning
    from configs import placement_ablation
    plan = placement_ablation.get_tuning()
    tuning.check(plan)
    effects = placement_ablation.get_report().effects
    tuning.check_effects(plan, effects)
    runs = declare.expand(placement_ablation.get_config(),
                          tuning.current_sweep(plan, str(tmp_path), 0.005), str(tmp_path))
    assert len(runs) == 18 * 3 and len(plan.pairs) == len(effects) == 4 + 3 + 3 + 4
    built = {name: placement.describe(declare.apply_overrides(
        placement_ablation.get_config(), overrides).model)
        for name, overrides in plan.options.items()}
    for cell in effects:  # a has the row's layer normalized, b is a without it
        with_norm, without = built[cell.a], built[cell.b]
        assert without[cell.row] == 'none' != with_norm[cell.row], cell
        assert {k: v for k, v in with_norm.items() if k != cell.row} == {
            k: v for k, v in without.items() if k != cell.row}, cell
    assert built['so_answer'] == placement.positions(
        'simple_cnn', dict(placement_ablation.get_config().model.simple_cnn), 'so_answer', False)


# The runner (bn_study.studies.runner): what scripts/sweep.py and every worker do, in-process.
STUDY = """
from configs import default
def get_config(arg=None):
    config = default.get_config()
    config.cpu_devices = 0  # this process's JAX has the test session's 4 devices
    return config
def get_sweep(arg=None):
    return [{'optimizer.learning_rate': lr, 'seed': s} for lr in (0.1, 10.0) for s in (0, 1)]
"""


def _study(tmp_path, text=STUDY, overrides=()):
    path = tmp_path / 'study.py'
    path.write_text(text)
    base = default.get_config()
    base.cpu_devices = 0
    return runner.Study(str(path), base, str(tmp_path / 'sweep'), tuple(overrides))


def _fake_train(trained):
    """Training as the tests want it: lr 10 diverges, seed 1 of lr 0.1 fails before its
    record (raises, no summary), the rest complete; each group trained is noted."""
    def train(group):
        trained.append([run.name for run in group])
        for run in group:
            if run.config.optimizer.learning_rate == 0.1 and run.config.seed == 1:
                raise errors.DatasetError('dataset not prepared')
            _finish(run, **({'status': records.DIVERGED, 'diverged_at_step': 3}
                            if run.config.optimizer.learning_rate > 1
                            else {'status': records.COMPLETE, 'final_test_accuracy': 0.9}))
    return train


def test_worker_mode_trains_its_runs_records_early_failures_and_exits_1(tmp_path):
    study = _study(tmp_path)
    runs = runner.expand(study)
    _finish(runs[2], status=records.COMPLETE, final_test_accuracy=0.8)  # finished meanwhile
    trained = []
    names = [runs[1].name, runs[2].name, runs[3].name]
    assert runner.work(study, names, train_group=_fake_train(trained)) == 1
    assert trained == [[runs[1].name], [runs[3].name]]  # the finished one skipped
    assert records.read_summary(runs[1].workdir) == {
        'status': records.FAILED, 'error': 'DatasetError: dataset not prepared'}
    manifest = sweep_index.read_manifest(study.sweep_dir)
    assert sorted(manifest['runs']) == sorted(names)  # the worker's runs only
    assert manifest['report'] == report_spec.ReportSpec().to_json()  # the study has none
    rows = {r['run']: r['status'] for r in sweep_index.read_index(study.sweep_dir)}
    assert rows == {runs[1].name: 'failed', runs[2].name: 'complete', runs[3].name: 'diverged'}
    with pytest.raises(errors.ConfigError, match='--run=seed-9 is not a run of this sweep'):
        runner.work(study, ['seed-9'], train_group=_fake_train([]))


def test_a_worker_that_is_not_process_0_trains_but_writes_nothing(tmp_path, monkeypatch):
    import jax
    monkeypatch.setattr(jax, 'process_index', lambda: 1)
    study = _study(tmp_path)
    runs = runner.expand(study)
    trained = []
    assert runner.work(study, [runs[0].name], train_group=lambda g: trained.append(g)) == 0
    assert trained == [[runs[0]]] and not os.path.exists(study.sweep_dir)
    assert runner.work(study, [runs[1].name], train_group=_fake_train([])) == 1
    assert records.read_summary(runs[1].workdir) is None  # process 0 records it
    assert sweep_index.read_manifest(study.sweep_dir) is None


def test_new_seeds_are_grouped_and_resumed_runs_train_alone(tmp_path):
    runs = declare.expand(default.get_config(), declare.product(
        {'optimizer.learning_rate': (0.1, 0.2)}, {'seed': range(3)}), str(tmp_path))
    planned = [(run, declare.START, 'new') for run in runs]
    planned[1] = (runs[1], declare.RESUME, 'checkpoint at step 5')
    planned[5] = (runs[5], declare.SKIP, 'complete')
    names = [[run.name for run in group] for group in runner.groups(planned, 2)]
    assert names == [[runs[0].name, runs[2].name], [runs[3].name, runs[4].name],
                     [runs[1].name]]
    assert [len(group) for group in runner.groups(planned, 0)] == [1] * 5


def test_the_dry_run_says_what_each_run_would_do_and_writes_nothing(tmp_path, capsys):
    study = _study(tmp_path)
    runs = runner.expand(study)
    _finish(runs[0], status=records.COMPLETE, final_test_accuracy=0.97)
    os.makedirs(os.path.join(runs[1].workdir, 'checkpoints', '7'))
    before = sorted(os.listdir(study.sweep_dir))
    assert runner.sweep(study, dry_run=True) == 0
    assert capsys.readouterr().out.splitlines() == [
        f'skip   {runs[0].name}: complete (test accuracy 0.9700)',
        f'resume {runs[1].name}: checkpoint at step 7',
        f'start  {runs[2].name}: new', f'start  {runs[3].name}: new', '',
        'would start 2, resume 1, skip 1 of 4 runs; nothing was written']
    assert sorted(os.listdir(study.sweep_dir)) == before
    other = declare.apply_overrides(study.base, {'batch_size': 64})
    sweep_index.record_sweep(study.sweep_dir, other, [])
    with pytest.raises(errors.WorkdirError, match=r'another sweep \(its base config differs '
                                                  r'in: batch_size\)'):
        runner.sweep(study, dry_run=True)


def test_an_in_process_sweep_prints_the_table_and_counts_and_a_rerun_skips(tmp_path, capsys):
    study = _study(tmp_path)
    trained = []
    assert runner.sweep(study, report=False, train_group=_fake_train(trained)) == 1
    out = capsys.readouterr().out
    assert 'Test accuracy after the last epoch, per placement' in out
    assert (f'runs: 1 ran, 0 skipped, 2 diverged, 1 failed; index: '
            f'{os.path.join(study.sweep_dir, "index.csv")}') in out
    assert len(trained) == 4
    trained.clear()  # the rerun: the failed run starts again, the rest are skipped
    assert runner.sweep(study, report=False, train_group=_fake_train(trained)) == 1
    assert 'runs: 0 ran, 3 skipped, 0 diverged, 1 failed' in capsys.readouterr().out
    assert trained == [['optimizer.learning_rate-0.1__seed-1']]


def test_the_print_launcher_gives_worker_commands_with_the_overrides_and_vmap(tmp_path,
                                                                               capsys):
    study = _study(tmp_path, overrides=('--config.num_epochs=2',))
    assert runner.sweep(study, runner.Where('print', remote_python='py'), vmap_seeds=2) == 0
    assert capsys.readouterr().out.splitlines() == [
        f'py -m bn_study.studies.worker --config={study.config_spec} '
        f'--sweep_dir={study.sweep_dir} --run=optimizer.learning_rate-{lr}__seed-0,'
        f'optimizer.learning_rate-{lr}__seed-1 --vmap_seeds=2 --config.num_epochs=2'
        for lr in ('0.1', '10.0')]
    assert not os.path.exists(study.sweep_dir)


def test_the_runner_refuses_what_it_cannot_run(tmp_path):
    study = _study(tmp_path)
    with pytest.raises(errors.ConfigError, match='--launch=tpu needs --tpu_name and '
                                                 '--tpu_zone'):
        runner.sweep(study, runner.Where('tpu'))
    with pytest.raises(errors.ConfigError, match='is not a gs:// bucket'):
        runner.sweep(study, runner.Where('tpu', tpu_name='t', tpu_zone='z'))
    with pytest.raises(errors.ConfigError, match='no launcher; choose one of: local, tpu, '
                                                 'print'):
        runner.check_where(runner.Where('slurm'), study.sweep_dir)
    plain = _study(tmp_path, 'from configs.default import get_config\n')
    with pytest.raises(errors.ConfigError, match='defines neither get_sweep\\(\\) nor '
                                                 'get_tuning\\(\\); it is no study'):
        runner.sweep(plain)
