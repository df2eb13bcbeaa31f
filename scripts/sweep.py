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
Every worker is `python -m bn_study.studies.worker ... --run=NAME` (the sweep reduced to
that run); --run=NAME here does the same. The steps are bn_study.studies.runner's.
"""

import sys

from absl import flags
from ml_collections import config_flags

from bn_study import cli
from bn_study.studies import launch, runner

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Study config with get_sweep() or get_tuning().',
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
_STAGE = flags.DEFINE_string(
    'stage', 'all', 'Tuned studies (get_tuning): all | tuning (stage 1 only) | comparison '
    '(stage 2, which refuses to start before stage 1 is finished).')
_RUN = flags.DEFINE_list('run', [], 'Worker mode: train only these runs of the sweep.')
_TPU_NAME = flags.DEFINE_string('tpu_name', '', 'tpu: the TPU VM.')
_TPU_ZONE = flags.DEFINE_string('tpu_zone', '', "tpu: the TPU VM's zone.")
_REMOTE_REPO = flags.DEFINE_string('remote_repo', 'bn_study',
                                   'tpu: the checkout of this repository on the TPU VM.')
_REMOTE_PYTHON = flags.DEFINE_string('remote_python', 'python3',
                                     'tpu, print: the Python that runs the workers.')
flags.mark_flags_as_required(['config', 'sweep_dir'])
cli.define_multihost_flags()


def main(argv):
    del argv  # absl has consumed the flags; workers get the --config.* ones from sys.argv
    study = runner.Study(config_flags.get_config_filename(flags.FLAGS['config']),
                         _CONFIG.value, _SWEEP_DIR.value, cli.config_overrides(sys.argv),
                         _STAGE.value)
    where = runner.Where(_LAUNCH.value, workers=_WORKERS.value, cores_per_worker=_CORES.value,
                         gpus_per_worker=_GPUS.value, tpu_name=_TPU_NAME.value,
                         tpu_zone=_TPU_ZONE.value, remote_repo=_REMOTE_REPO.value,
                         remote_python=_REMOTE_PYTHON.value)
    runner.check_where(where, study.sweep_dir)
    cli.initialize_multihost()  # a worker on a TPU VM: before any JAX call
    if _RUN.value:
        sys.exit(runner.work(study, _RUN.value, _VMAP_SEEDS.value))
    sys.exit(runner.sweep(study, where, vmap_seeds=_VMAP_SEEDS.value, dry_run=_DRY_RUN.value,
                          report=_REPORT.value, report_dir=_REPORT_DIR.value))


if __name__ == '__main__':
    cli.run(main)
