"""Where a sweep's runs execute: in this process one after another, in parallel local worker
processes (each pinned to its share of cores or GPUs), on every worker of a TPU VM over
gcloud ssh, or as printed commands for another scheduler.

Every worker, local or remote, is `python -m bn_study.studies.worker --config=...
--sweep_dir=... --run=NAME`: the same config file and sweep, reduced to one run (or one
group of seeds), so what runs is always what the config file declares. The package must be
importable where a worker runs: installed (`pip install -e .`, as scripts/setup.sh does), or
the worker started in the checkout's root, as the TPU launcher does (cd there, python -m).
"""

import collections
import ctypes
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

from absl import logging
from etils import epath

from bn_study import errors, records
from bn_study.paths import REPO
from bn_study.studies import declare, sweep_index

# The module every worker runs (python -m): bn_study/studies/worker.py.
WORKER = 'bn_study.studies.worker'
# Where scripts/sweep.py runs a sweep's runs.
LAUNCHERS = ('local', 'tpu', 'print')
OUTCOMES = ('ran', 'skipped', 'diverged', 'failed')


@dataclasses.dataclass(frozen=True)
class Invocation:
    """The flags that name a sweep: how a worker reruns it for some of its runs."""
    config_spec: str  # 'configs/x.py:arg'
    config_overrides: tuple[str, ...]  # '--config.a=b' flags given to the sweep
    sweep_dir: str
    worker_flags: tuple[str, ...] = ()  # e.g. --vmap_seeds=3

    def worker_args(self, names: list[str], *extra: str) -> list[str]:
        """The worker's command line after the Python: `-m bn_study.studies.worker` and its
        flags (the config path as the sweep was given it: relative to the directory the
        worker starts in)."""
        return ['-m', WORKER, f'--config={self.config_spec}', f'--sweep_dir={self.sweep_dir}',
                f'--run={",".join(names)}', *self.worker_flags, *extra,
                *self.config_overrides]


def outcome(run: declare.Run) -> str:
    """What a finished attempt amounts to: ran, diverged or failed (no summary: it crashed)."""
    summary = records.read_summary(run.workdir)
    status = summary['status'] if summary else records.FAILED
    return {records.COMPLETE: 'ran', records.DIVERGED: 'diverged'}.get(status, 'failed')


def _log_outcome(run: declare.Run, result: str, seconds: float) -> None:
    summary = records.read_summary(run.workdir) or {}
    detail = {'ran': lambda: f'test accuracy {summary["final_test_accuracy"]:.4f}',
              'diverged': lambda: f'diverged at step {summary["diverged_at_step"]}',
              'failed': lambda: f'FAILED: {summary.get("error", "no summary written")}'}
    logging.info('%s: %s (%.0f s)', run.name, detail[result](), seconds)


def run_in_process(groups: list[list[declare.Run]], sweep_dir: str, train_group,
                   writer: bool = True) -> dict:
    """One group after another in this process; `train_group(runs)` trains a group (one
    run, or several seeds vmapped). A failure is recorded in the run's summary by training
    itself (or here, if it failed before its record started), logged with its traceback,
    and the sweep goes on. This is both the in-process sweep and every worker's loop.

    writer=False: another process of a multi-host run writes the records; this one only
    trains, and counts each group that raised as failed (it may not see the records yet)."""
    counts = collections.Counter()
    for index, group in enumerate(groups, start=1):
        logging.info('[%d/%d] %s', index, len(groups), ', '.join(r.name for r in group))
        start = time.perf_counter()
        error = None
        try:
            train_group(group)
        except Exception as e:  # training records its own failures; the sweep goes on
            error = f'{type(e).__name__}: {e}'
            logging.error('%s: %s', group[0].name, error, exc_info=True)
        if not writer:
            if error:
                counts['failed'] += len(group)
            continue
        for run in group:
            if error and records.read_summary(run.workdir) is None:  # failed before its record
                record_failure(run, error)
            counts[outcome(run)] += 1
            _log_outcome(run, outcome(run), time.perf_counter() - start)
        sweep_index.update_index(sweep_dir)
    return counts


def _die_with_parent(cores: list[int]):
    """Runs in the child before exec: its own core share, and death if the sweep dies (so a
    killed sweep leaves no orphan runs writing into the sweep dir)."""
    def setup():
        if sys.platform.startswith('linux'):  # elsewhere: no pinning, no death signal
            os.sched_setaffinity(0, cores)
            ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return setup


@dataclasses.dataclass(frozen=True)
class WorkerShares:
    """What each local worker gets: `cores` CPU cores (0: an equal share) and `gpus` GPUs
    (0: leave CUDA_VISIBLE_DEVICES alone). Simulated CPU devices are the run's own
    config.cpu_devices."""
    workers: int
    cores: int = 0
    gpus: int = 0

    def cores_of(self, slot: int) -> list[int]:
        available = sorted(os.sched_getaffinity(0) if hasattr(os, 'sched_getaffinity')
                           else range(os.cpu_count()))
        share = self.cores or max(1, len(available) // self.workers)
        return [available[(slot * share + i) % len(available)] for i in range(share)]

    def env_of(self, slot: int) -> dict:
        env = dict(os.environ)
        if self.gpus:
            env['CUDA_VISIBLE_DEVICES'] = ','.join(
                str(slot * self.gpus + i) for i in range(self.gpus))
        return env


def _log_dir(sweep_dir: str) -> str:
    """Worker logs: <sweep_dir>/logs on a local disk, a local temporary folder otherwise."""
    if '://' in sweep_dir:
        return tempfile.mkdtemp(prefix='bn_study_sweep_logs_')
    path = os.path.join(sweep_dir, 'logs')
    os.makedirs(path, exist_ok=True)
    return path


def run_workers(groups: list[list[declare.Run]], invocation: Invocation,
                shares: WorkerShares) -> dict:
    """Each group in a fresh worker process, at most shares.workers at once. A worker that
    dies without a summary (a segfault, the OOM killer) is recorded as failed, with the
    tail of its log, and the sweep goes on."""
    log_dir = _log_dir(invocation.sweep_dir)
    logging.info('%d worker(s); logs in %s', shares.workers, log_dir)
    pending = collections.deque(enumerate(groups, start=1))
    running = {}  # slot -> (process, group, log file, start time)
    counts = collections.Counter()
    try:
        while pending or running:
            for slot in range(shares.workers):
                if slot not in running and pending:
                    index, group = pending.popleft()
                    log_path = os.path.join(log_dir, f'{group[0].name}.log')
                    log = open(log_path, 'a')
                    process = subprocess.Popen(
                        [sys.executable, *invocation.worker_args([r.name for r in group])],
                        cwd=os.getcwd(), stdout=log, stderr=subprocess.STDOUT,
                        env=shares.env_of(slot),
                        preexec_fn=_die_with_parent(shares.cores_of(slot)))
                    logging.info('[%d/%d] worker %d: %s', index, len(groups), slot,
                                 ', '.join(r.name for r in group))
                    running[slot] = (process, group, log, time.perf_counter())
            time.sleep(0.2)
            for slot, (process, group, log, start) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[slot]
                for run in group:
                    if records.read_summary(run.workdir) is None:
                        _record_crash(run, process.returncode, log.name)
                    counts[outcome(run)] += 1
                    _log_outcome(run, outcome(run), time.perf_counter() - start)
                sweep_index.update_index(invocation.sweep_dir)
    finally:  # interrupted: stop the workers; their runs resume from checkpoints on rerun
        for process, *_ in running.values():
            process.terminate()
        for process, *_ in running.values():
            process.wait()
    return counts


def record_failure(run: declare.Run, error: str) -> None:
    """A failed summary for a run that left none (it failed before its record started, or
    its worker died), and its config if it has none yet, so tables and reports list it;
    the workdir may not exist yet."""
    workdir = epath.Path(run.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / records.CONFIG_FILE).exists():
        (workdir / records.CONFIG_FILE).write_text(run.config.to_json(indent=2, sort_keys=True))
    records.write_summary(run.workdir, {'status': records.FAILED, 'error': error})


def _record_crash(run: declare.Run, returncode: int, log_path: str) -> None:
    lines = open(log_path).read().strip().splitlines()
    last = lines[-1][:300] if lines else ''
    record_failure(run, f'worker exited with code {returncode} and wrote no summary; last '
                         f'log line: {last!r} (log: {log_path})')


def remote_config_spec(config_spec: str) -> str:
    """The config file as a path inside the repository, which is what remote workers have."""
    path, sep, arg = config_spec.partition(':')
    relative = os.path.relpath(os.path.abspath(path), REPO)
    if relative.startswith(os.pardir):
        raise errors.ConfigError(f'config file {path} is outside the repository {REPO}; '
                                  'remote workers only have the repository')
    return relative + sep + arg


def tpu_command(invocation: Invocation, names: list[str], tpu: str, zone: str,
                remote_repo: str, remote_python: str) -> list[str]:
    """The gcloud command that runs one group on every worker of a TPU VM, each worker a
    process of one multi-host JAX run (jax.distributed finds the others itself). Each worker
    cds into the checkout at remote_repo and starts the worker module there (python -m puts
    that directory first on sys.path, so bn_study imports from the checkout even if it was
    never pip-installed; remote_python needs the requirements installed)."""
    remote = dataclasses.replace(invocation,
                                 config_spec=remote_config_spec(invocation.config_spec))
    worker = shlex.join([remote_python, *remote.worker_args(names, '--multihost_auto')])
    return ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', tpu, '--zone', zone, '--worker=all',
            '--command', f'cd {shlex.quote(remote_repo)} && {worker}']


def check_cloud_sweep_dir(sweep_dir: str) -> None:
    if not sweep_dir.startswith('gs://'):
        raise errors.ConfigError(f'--sweep_dir={sweep_dir} is not a gs:// bucket; a TPU '
                                  "pod's workers share no local disk")


def run_on_tpu(groups: list[list[declare.Run]], invocation: Invocation, tpu: str, zone: str,
               remote_repo: str, remote_python: str) -> dict:
    """One group after another, each on the whole TPU VM; the runs write their records to
    the bucket, and this machine reads them back to count and index."""
    counts = collections.Counter()
    for index, group in enumerate(groups, start=1):
        command = tpu_command(invocation, [r.name for r in group], tpu, zone, remote_repo,
                              remote_python)
        logging.info('[%d/%d] %s', index, len(groups), shlex.join(command))
        start = time.perf_counter()
        returncode = subprocess.run(command, check=False).returncode
        for run in group:
            result = outcome(run)
            if result == 'failed' and records.read_summary(run.workdir) is None:
                logging.error('%s: gcloud exited with code %d and the run wrote no summary',
                              run.name, returncode)
            counts[result] += 1
            _log_outcome(run, result, time.perf_counter() - start)
        sweep_index.update_index(invocation.sweep_dir)
    return counts


def scheduler_commands(groups: list[list[declare.Run]], invocation: Invocation,
                       python: str = 'python') -> list[str]:
    """One shell command per group, for Slurm, a GPU cluster or a plain shell loop; each
    records its run and updates the index itself. Run them in the directory the config path
    is relative to, with a `python` that imports bn_study (`pip install -e .` in the
    checkout, or the checkout's root as the working directory)."""
    return [shlex.join([python, *invocation.worker_args([r.name for r in group])])
            for group in groups]


def is_local(sweep_dir: str) -> bool:
    return '://' not in sweep_dir
