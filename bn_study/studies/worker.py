"""A sweep's worker: trains some runs of a study, the sweep reduced to them.

    python -m bn_study.studies.worker --config=configs/seed_question.py \
        --sweep_dir=studies/seed_question --run=NAME[,NAME...] [--vmap_seeds=K] \
        [--config.a=b ...] [--multihost_auto | --coordinator_address=HOST:PORT \
        --num_processes=P --process_id=I]

Every launcher starts this (launch.Invocation.worker_args): local worker processes, each
worker of a TPU VM, and the commands --launch=print gives a scheduler. It records the named
runs in the sweep dir (skipping any that finished meanwhile), updates the index, and exits
1 if one failed. Runs that differ only in seed are vmapped together with --vmap_seeds=K.
bn_study must be importable: installed (`pip install -e .`) or started from the checkout's
root; the config path is relative to the directory it starts in.
"""

import sys


def main() -> None:
    from absl import flags
    from ml_collections import config_flags

    from bn_study import cli
    from bn_study.studies import runner

    config = config_flags.DEFINE_config_file('config', None, 'Study config with get_sweep() or get_tuning().',
                                             lock_config=True)
    sweep_dir = flags.DEFINE_string('sweep_dir', None, 'Directory holding one workdir per run.')
    run = flags.DEFINE_list('run', None, 'The runs of the sweep to train.')
    vmap_seeds = flags.DEFINE_integer(
        'vmap_seeds', 0, 'Train up to this many runs that differ only in seed as one vmapped '
        'program (new runs only); 0: every run alone.', lower_bound=0)
    stage = flags.DEFINE_string('stage', 'all', 'Tuned studies: the stage the runs belong to.')
    flags.mark_flags_as_required(['config', 'sweep_dir', 'run'])
    cli.define_multihost_flags()

    def work(argv):
        del argv  # absl has consumed the flags
        cli.initialize_multihost()  # a worker on a TPU VM: before any JAX call
        study = runner.Study(config_flags.get_config_filename(flags.FLAGS['config']),
                             config.value, sweep_dir.value, cli.config_overrides(sys.argv),
                             stage.value)
        sys.exit(runner.work(study, run.value, vmap_seeds.value))

    cli.run(work)


if __name__ == '__main__':
    main()
