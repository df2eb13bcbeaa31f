"""Runs a study: expands a config file's get_sweep() into runs, decides what each run needs,
groups them, and trains them where they execute; then the table, the report and the counts.

scripts/sweep.py is its flags and one call to `sweep`; every worker, local or remote, is
bn_study.studies.worker, one call to `work`. Nothing here reads a flag: each function takes
what it needs, so each step runs (and is tested) in-process.
"""

import collections
import dataclasses
import os

import ml_collections
from absl import logging

from bn_study import cli, errors
from bn_study.analysis import report_spec as report_spec_lib
from bn_study.studies import declare, launch, sweep_index, tuning


@dataclasses.dataclass(frozen=True)
class Study:
    """A sweep as its command line names it."""
    config_spec: str  # --config: 'path[:arg]', the file holding get_config and get_sweep
    base: ml_collections.ConfigDict  # that file's config, with the --config.a=b overrides
    sweep_dir: str
    overrides: tuple[str, ...] = ()  # the --config.a=b flags, which every worker gets too
    stage: str = 'all'  # tuned studies: one of tuning.STAGES (--stage)


@dataclasses.dataclass(frozen=True)
class Where:
    """Where the runs execute (scripts/sweep.py's --launch and the flags that go with it)."""
    launcher: str = 'local'  # one of launch.LAUNCHERS
    workers: int = 0  # local: 0 trains in this process; N worker processes at once
    cores_per_worker: int = 0
    gpus_per_worker: int = 0
    tpu_name: str = ''
    tpu_zone: str = ''
    remote_repo: str = 'bn_study'
    remote_python: str = 'python3'


def check_where(where: Where, sweep_dir: str) -> None:
    """Refuses a launcher without what it needs, before anything starts."""
    if where.launcher not in launch.LAUNCHERS:
        raise errors.ConfigError(f'--launch={where.launcher} is no launcher; choose one of: '
                                 f'{", ".join(launch.LAUNCHERS)}')
    if where.launcher == 'tpu':
        missing = [f'--{name}' for name, value in (('tpu_name', where.tpu_name),
                                                   ('tpu_zone', where.tpu_zone)) if not value]
        if missing:
            raise errors.ConfigError(f'--launch=tpu needs {" and ".join(missing)}')
        launch.check_cloud_sweep_dir(sweep_dir)


def _report_spec(config_spec: str) -> report_spec_lib.ReportSpec:
    module, arg = cli.config_module(config_spec)
    return (module.get_report(arg) if hasattr(module, 'get_report')
            else report_spec_lib.ReportSpec())


def report_spec(config_spec: str) -> dict:
    """The study's report_spec.ReportSpec as JSON (its get_report(arg); the default spec if it
    has none), for sweep.json."""
    return _report_spec(config_spec).to_json()


def study_tuning(config_spec: str) -> tuning.Tuning | None:
    """The study's tuned comparison (its get_tuning(arg)), or None for a fixed sweep (no
    get_tuning, or one that returns None for this variant: then get_sweep gives the runs)."""
    module, arg = cli.config_module(config_spec)
    return module.get_tuning(arg) if hasattr(module, 'get_tuning') else None


def expand(study: Study, record: bool = True) -> list[declare.Run]:
    """Every run of the sweep as far as it goes now, validated, and the sweep dir checked
    against them. A tuned study's runs grow as its stages finish (tuning.current_sweep,
    which records its choice unless record=False)."""
    module, arg = cli.config_module(study.config_spec)
    tuned = study_tuning(study.config_spec)
    if tuned is not None:
        spec = _report_spec(study.config_spec)
        tuning.check_effects(tuned, spec.effects)
        sweep = tuning.current_sweep(tuned, study.sweep_dir, spec.margin, study.stage, record)
    elif study.stage != 'all':
        raise errors.ConfigError(f'--stage={study.stage} applies to tuned studies only; '
                                 f'{study.config_spec} defines no get_tuning()')
    elif hasattr(module, 'get_sweep'):
        sweep = module.get_sweep(arg)
    else:
        raise errors.ConfigError(f'{module.__file__} defines neither get_sweep() nor '
                                 'get_tuning(); it is no study')
    runs = declare.expand(study.base, sweep, study.sweep_dir)
    declare.check_sweep_dir(runs, study.sweep_dir)
    return runs


def plan(runs: list[declare.Run]) -> list[tuple[declare.Run, str, str]]:
    """(run, START | RESUME | SKIP, why) for each run, from its workdir."""
    return [(run, *declare.next_action(run)) for run in runs]


def groups(planned: list[tuple], vmap_seeds: int) -> list[list[declare.Run]]:
    """What to train, as groups: new runs differing only in seed vmapped together (up to
    vmap_seeds of them), every other run alone; skipped runs are left out."""
    new = [run for run, action, *_ in planned if action == declare.START]
    other = [[run] for run, action, *_ in planned if action == declare.RESUME]
    return declare.seed_groups(new, vmap_seeds) + other


def dry_run_lines(study: Study, planned: list[tuple]) -> list[str]:
    """--dry_run's lines; refuses a sweep dir of another sweep, as a real run would."""
    sweep_index.check_same_base(study.sweep_dir, study.base)
    return declare.describe_plan(planned)


def invocation(study: Study, vmap_seeds: int) -> launch.Invocation:
    """How a worker reruns this sweep for some of its runs."""
    return launch.Invocation(study.config_spec, tuple(study.overrides), study.sweep_dir,
                             ((f'--vmap_seeds={vmap_seeds}',) if vmap_seeds > 1 else ())
                             + ((f'--stage={study.stage}',) if study.stage != 'all' else ()))


def _train_group(group: list[declare.Run]) -> None:
    from bn_study.training import parallel, vmap_seeds  # JAX: only where runs train
    try:
        vmap_seeds.train_group(group)
    finally:  # a long study in one process would otherwise run out of memory maps
        parallel.release_programs_if_maps_high()


def work(study: Study, names: list[str], vmap_seeds: int = 0, train_group=None) -> int:
    """Worker mode: trains the named runs (skipping any finished meanwhile), through the
    same launch.run_in_process as an in-process sweep; returns the exit status, 1 if one
    failed. On several hosts every process trains, and process 0 writes the records."""
    import jax

    from bn_study.training import parallel
    runs = declare.select(expand(study), names)
    # Before this process's first JAX computation (jax.process_index is one): a sweep's
    # runs share one process, so the first run's device split serves them all.
    parallel.split_cpu(runs[0].config.cpu_devices)
    writer = jax.process_index() == 0
    if writer:
        sweep_index.record_sweep(study.sweep_dir, study.base, runs,
                                 report_spec(study.config_spec))
    planned = plan(runs)
    for run, action, reason in planned:
        logging.info('%s: %s (%s)', run.name, action, reason)
    counts = launch.run_in_process(groups(planned, vmap_seeds), study.sweep_dir,
                                   train_group or _train_group, writer=writer)
    return 1 if counts['failed'] else 0


def _train(study: Study, where: Where, todo: list, vmap_seeds: int, train_group) -> dict:
    """Trains the groups where `where` says; the outcome counts."""
    worker = invocation(study, vmap_seeds)
    if where.launcher == 'tpu':
        return launch.run_on_tpu(todo, worker, where.tpu_name, where.tpu_zone,
                                 where.remote_repo, where.remote_python)
    if where.workers == 0:
        return launch.run_in_process(todo, study.sweep_dir, train_group or _train_group)
    return launch.run_workers(todo, worker, launch.WorkerShares(
        where.workers, where.cores_per_worker, where.gpus_per_worker))


def sweep(study: Study, where: Where = Where(), vmap_seeds: int = 0, dry_run: bool = False,
          report: bool = True, report_dir: str = '', train_group=None) -> int:
    """The whole sweep: plans it, and prints the plan (dry_run) or the workers' commands
    (launcher print), or trains what is left where `where` says; on a local sweep dir then
    prints the accuracy table, writes the report (report) and prints its verdicts. Returns
    the exit status: 1 if a run failed. `train_group(runs)` trains a group in this process
    (tests replace it).

    A tuned study goes on while its runs grow: once stage 1 is finished its choice adds
    stage 2, and a look that leaves a comparison undecided adds the next look's seeds. The
    dry run and the print launcher show only the runs known now."""
    check_where(where, study.sweep_dir)
    runs = expand(study, record=not dry_run)
    planned = plan(runs)
    if dry_run:
        lines = dry_run_lines(study, planned)
        if study_tuning(study.config_spec) is not None:
            lines.append('(a tuned study: later stages and looks are added as earlier ones '
                         'finish)')
        print('\n'.join(lines))
        return 0
    if where.launcher == 'print':
        for command in launch.scheduler_commands(groups(planned, vmap_seeds),
                                                 invocation(study, vmap_seeds),
                                                 where.remote_python):
            print(command)
        return 0
    counts = collections.Counter()
    trained = set()
    while True:
        todo = groups(planned, vmap_seeds)
        todo = [group for group in todo if not {run.name for run in group} <= trained]
        sweep_index.record_sweep(study.sweep_dir, study.base, runs,
                                 report_spec(study.config_spec))
        sweep_index.update_index(study.sweep_dir)
        for run, action, reason in planned:
            logging.info('%s %s: %s', action, run.name, reason)
        if not todo:
            break
        counts.update(_train(study, where, todo, vmap_seeds, train_group))
        trained.update(run.name for group in todo for run in group)
        runs = expand(study)
        planned = plan(runs)
    counts['skipped'] = len(runs) - sum(counts[k] for k in ('ran', 'diverged', 'failed'))
    sweep_index.update_index(study.sweep_dir)
    if launch.is_local(study.sweep_dir):
        print_results(study.sweep_dir, report, report_dir)
    print(f'\nruns: {", ".join(f"{counts[k]} {k}" for k in launch.OUTCOMES)}; index: '
          f'{os.path.join(study.sweep_dir, sweep_index.INDEX_FILE)}')
    return 1 if counts['failed'] else 0


def print_results(sweep_dir: str, report: bool = True, report_dir: str = '') -> None:
    """The accuracy table per placement; with report, writes the report (into report_dir,
    default the sweep dir) and prints its path and verdict lines."""
    from bn_study.analysis import results
    if tuning.read_state(sweep_dir) is None:  # a tuned study's Answer says it per option
        table = results.placement_table(results.load_runs(sweep_dir))
        print(f'\nTest accuracy after the last epoch, per placement ({sweep_dir}):')
        print(table.to_string(float_format=lambda v: f'{v:.4f}'))
    if report:
        from bn_study.analysis import report as report_lib
        written = report_lib.write_report(sweep_dir, report_dir)
        print(f'\nreport: {written.path}')
        print(''.join(f'{line}\n' for line in written.verdict_lines))
