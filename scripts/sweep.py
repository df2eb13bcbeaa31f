"""Runs a config file's sweep (its get_sweep()) and prints test accuracy per placement.

    python scripts/sweep.py --config=configs/seed_question.py --sweep_dir=studies/seed_question

Rerunning the same command skips complete (and diverged) runs, resumes runs from their
checkpoints and starts the rest; --dry_run says which and why, and writes nothing.
--config.a=b overrides apply to every run. Where the runs execute (--launch):
  local  one run after another in this process (--workers=0, the default), or --workers=N
         worker processes at once, each pinned to its share of the cores
         (--cores_per_worker) and GPUs (--gpus_per_worker).
  tpu    each run in turn on every worker of a TPU VM, over gcloud ssh (--tpu_name,
         --tpu_zone; a gs:// --sweep_dir; the repository checked out at --remote_repo there).
  print  prints one command per run, for Slurm or any other scheduler, and runs nothing.
Every worker runs this script with --run=NAME (the sweep reduced to that run).
"""

import os
import sys

import jax
from absl import flags, logging
from ml_collections import config_flags

from bn_study import cli
from bn_study.studies import launch
from bn_study.training import parallel
from bn_study.analysis import report_spec
from bn_study import records
from bn_study.analysis import results
from bn_study.studies import declare
from bn_study.studies import sweep_index
from bn_study import errors

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Study config with get_sweep().',
                                          lock_config=True)
_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'Directory holding one workdir per run.')
_LAUNCH = flags.DEFINE_enum('launch', 'local', launch.LAUNCHERS, 'Where runs execute.')
_WORKERS = flags.DEFINE_integer(
    'workers', 0, 'local: 0 runs one run after another in this process (fastest on a CPU: '
    'no start-up per run, each run on all cores through config.cpu_devices); N: N worker '
    'processes at once, e.g. one per GPU with --gpus_per_worker=1.', lower_bound=0)
_CORES = flags.DEFINE_integer('cores_per_worker', 0, 'local: CPU cores each worker is pinned '
                              'to; 0: an equal share.', lower_bound=0)
_GPUS = flags.DEFINE_integer('gpus_per_worker', 0, 'local: GPUs each worker sees '
                             '(CUDA_VISIBLE_DEVICES); 0: all.', lower_bound=0)
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'List what would run and why; write nothing.')
_VMAP_SEEDS = flags.DEFINE_integer(
    'vmap_seeds', 0, 'Train up to this many runs that differ only in seed as one vmapped '
    'program (new runs only; resumed runs train alone); 0: every run alone.', lower_bound=0)
_REPORT = flags.DEFINE_bool('report', True, 'Write REPORT.md and figures at the end (local sweep '
                            'dirs; or run scripts/report.py).')
_REPORT_DIR = flags.DEFINE_string('report_dir', '', 'Where the report goes; default: the sweep '
                                  'dir.')
_RUN = flags.DEFINE_list('run', [], 'Worker mode: train only these runs of the sweep.')
_TPU_NAME = flags.DEFINE_string('tpu_name', '', 'tpu: the TPU VM.')
_TPU_ZONE = flags.DEFINE_string('tpu_zone', '', "tpu: the TPU VM's zone.")
_REMOTE_REPO = flags.DEFINE_string('remote_repo', 'bn_study',
                                   'tpu: the checkout of this repository on the TPU VM.')
_REMOTE_PYTHON = flags.DEFINE_string('remote_python', 'python3',
                                     'tpu, print: the Python that runs the workers.')
flags.mark_flags_as_required(['config', 'sweep_dir'])
cli.define_multihost_flags()


def _check_flags() -> None:
    if _LAUNCH.value == 'tpu':
        missing = [f'--{f.name}' for f in (_TPU_NAME, _TPU_ZONE) if not f.value]
        if missing:
            raise errors.ConfigError(f'--launch=tpu needs {" and ".join(missing)}')
        launch.check_cloud_sweep_dir(_SWEEP_DIR.value)


def _report_spec() -> dict:
    """The study's report_spec.ReportSpec as JSON (its get_report(arg); the default spec if it
    has none), for sweep.json."""
    module, arg = cli.config_module(config_flags.get_config_filename(flags.FLAGS['config']))
    spec = module.get_report(arg) if hasattr(module, 'get_report') else report_spec.ReportSpec()
    return spec.to_json()


def _expand() -> list[declare.Run]:
    """Every run of the sweep, validated, and the sweep dir checked against them."""
    module, arg = cli.config_module(config_flags.get_config_filename(flags.FLAGS['config']))
    if not hasattr(module, 'get_sweep'):
        raise errors.ConfigError(f'{module.__file__} defines no get_sweep(); it is no study')
    runs = declare.expand(_CONFIG.value, module.get_sweep(arg), _SWEEP_DIR.value)
    declare.check_sweep_dir(runs, _SWEEP_DIR.value)
    return runs


def _work(runs: list[declare.Run]) -> None:
    """Worker mode: trains the named runs (skipping any finished meanwhile); exit 1 if one
    failed. On several hosts every process trains, and process 0 writes the records."""
    from bn_study.training import vmap_seeds
    # Before this process's first JAX computation (jax.process_index is one): a sweep's
    # runs share one process, so the first run's device split serves them all.
    parallel.split_cpu(runs[0].config.cpu_devices)
    writer = jax.process_index() == 0
    if writer:
        sweep_index.record_sweep(_SWEEP_DIR.value, _CONFIG.value, runs, _report_spec())
    todo = []
    for run in runs:
        action, reason = declare.next_action(run)
        logging.info('%s: %s (%s)', run.name, action, reason)
        if action != declare.SKIP:
            todo.append((run, action))
    failed = 0
    for group in _groups(todo):
        try:
            vmap_seeds.train_group(group)
        except Exception as e:  # training records its failures; not those before its record
            logging.exception('%s failed: %s', group[0].name, e)
            failed += 1
            for run in group:
                if writer and records.read_summary(run.workdir) is None:
                    launch.record_failure(run, f'{type(e).__name__}: {e}')
        if writer:
            sweep_index.update_index(_SWEEP_DIR.value)
    if failed:
        sys.exit(1)


def _dry_run(plan) -> None:
    sweep_index.check_same_base(_SWEEP_DIR.value, _CONFIG.value)
    print('\n'.join(declare.describe_plan(plan)))


def _groups(plan) -> list[list[declare.Run]]:
    """What to train, as groups: new runs differing only in seed vmapped together (with
    --vmap_seeds), every other run alone."""
    new = [run for run, action, *_ in plan if action == declare.START]
    other = [[run] for run, action, *_ in plan if action == declare.RESUME]
    return declare.seed_groups(new, _VMAP_SEEDS.value) + other


def _train_in_process(group: list[declare.Run]) -> None:
    from bn_study.training import vmap_seeds
    vmap_seeds.train_group(group)


def main(argv):
    del argv  # absl has consumed the flags; workers get the --config.* ones from sys.argv
    _check_flags()
    cli.initialize_multihost()  # a worker on a TPU VM: before any JAX call
    runs = _expand()
    if _RUN.value:
        _work(declare.select(runs, _RUN.value))
        return
    plan = [(run, *declare.next_action(run)) for run in runs]
    if _DRY_RUN.value:
        _dry_run(plan)
        return
    groups = _groups(plan)
    invocation = launch.Invocation(
        config_flags.get_config_filename(flags.FLAGS['config']),
        launch.config_overrides(sys.argv), _SWEEP_DIR.value,
        (f'--vmap_seeds={_VMAP_SEEDS.value}',) if _VMAP_SEEDS.value > 1 else ())
    if _LAUNCH.value == 'print':
        for command in launch.scheduler_commands(groups, invocation, _REMOTE_PYTHON.value):
            print(command)
        return
    sweep_index.record_sweep(_SWEEP_DIR.value, _CONFIG.value, runs, _report_spec())
    sweep_index.update_index(_SWEEP_DIR.value)
    for run, action, reason in plan:
        logging.info('%s %s: %s', action, run.name, reason)
    if _LAUNCH.value == 'tpu':
        counts = launch.run_on_tpu(groups, invocation, _TPU_NAME.value, _TPU_ZONE.value,
                                   _REMOTE_REPO.value, _REMOTE_PYTHON.value)
    elif _WORKERS.value == 0:
        counts = launch.run_in_process(groups, _SWEEP_DIR.value, _train_in_process)
    else:
        counts = launch.run_workers(groups, invocation, launch.WorkerShares(
            _WORKERS.value, _CORES.value, _GPUS.value))
    counts['skipped'] = len(runs) - sum(len(group) for group in groups)
    sweep_index.update_index(_SWEEP_DIR.value)
    if launch.is_local(_SWEEP_DIR.value):
        table = results.placement_table(results.load_runs(_SWEEP_DIR.value))
        print(f'\nTest accuracy after the last epoch, per placement ({_SWEEP_DIR.value}):')
        print(table.to_string(float_format=lambda v: f'{v:.4f}'))
        if _REPORT.value:
            from bn_study.analysis import report
            path = report.write_report(_SWEEP_DIR.value, _REPORT_DIR.value)
            print(f'\nreport: {path}')
            print(''.join(report.verdict_lines(path)))
    print(f'\nruns: {", ".join(f"{counts[k]} {k}" for k in launch.OUTCOMES)}; index: '
          f'{os.path.join(_SWEEP_DIR.value, sweep_index.INDEX_FILE)}')
    if counts['failed']:
        sys.exit(1)


if __name__ == '__main__':
    cli.run(main)
