"""A run's record in its workdir: config.json, metrics.jsonl, diagnostics.jsonl, TensorBoard
events, summary.json.

summary.json is written last and atomically; its `status` is `complete` only for a run
that finished. Everything downstream (studies, reports) reads these files, never logs.
"""

import glob
import json
import os
import subprocess

import flax
import jax
import ml_collections
from flax.metrics import tensorboard

from bn_study import choices

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'
DIAGNOSTICS_FILE = 'diagnostics.jsonl'
SUMMARY_FILE = 'summary.json'
COMPLETE = 'complete'
FAILED = 'failed'
# A NaN or inf in the loss or parameters: a result (e.g. of a learning-rate sweep), not a crash.
DIVERGED = 'diverged'
FINISHED = (COMPLETE, DIVERGED)  # outcomes that rerunning the same config would repeat


def read_summary(workdir: str) -> dict | None:
    """The run's summary, or None if it has none (never started, running, or killed)."""
    path = os.path.join(workdir, SUMMARY_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_metrics(workdir: str, name: str = METRICS_FILE) -> list[dict]:
    """The rows of metrics.jsonl (or of diagnostics.jsonl, by name)."""
    with open(os.path.join(workdir, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_json_atomically(path: str, payload: dict) -> None:
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def git_commit() -> str:
    """The code's commit, with '+dirty' for uncommitted changes; 'unknown' outside git."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        run = lambda *a: subprocess.run(['git', *a], cwd=repo, capture_output=True,
                                        text=True, check=True).stdout.strip()
        commit = run('rev-parse', 'HEAD')
        dirty = run('status', '--porcelain', '--untracked-files=no')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return commit + ('+dirty' if dirty else '')


def environment() -> dict:
    """Versions and hardware that a result depends on."""
    return {'jax': jax.__version__, 'flax': flax.__version__, 'git_commit': git_commit(),
            'backend': jax.default_backend(), 'process_count': jax.process_count()}


class RunRecord:
    """Writes one run's files; on non-writing processes (multi-host) every call is a no-op."""

    def __init__(self, workdir: str, writer: bool = True):
        self.workdir = workdir
        self.writer = writer
        self._tensorboard = None

    def start(self, config: ml_collections.ConfigDict) -> None:
        """Refuses a finished workdir, clears an unfinished one, writes the resolved config."""
        previous = read_summary(self.workdir)
        if previous is not None and previous['status'] in FINISHED:
            raise choices.ConfigError(
                f'workdir {self.workdir} already holds a {previous["status"]} run; '
                'choose a new --workdir or delete this one')
        if not self.writer:
            return
        os.makedirs(self.workdir, exist_ok=True)
        stale = [SUMMARY_FILE, METRICS_FILE, DIAGNOSTICS_FILE] + glob.glob(
            os.path.join(self.workdir, 'events.out.tfevents.*'))
        for name in stale:  # a run that never finished starts again from scratch
            path = os.path.join(self.workdir, name)
            if os.path.exists(path):
                os.remove(path)
        with open(os.path.join(self.workdir, CONFIG_FILE), 'w') as f:
            f.write(config.to_json(indent=2, sort_keys=True))
        self._tensorboard = tensorboard.SummaryWriter(self.workdir)

    def log_epoch(self, row: dict) -> None:
        """Appends one epoch's metrics (flushed, so a crash keeps earlier epochs)."""
        if not self.writer:
            return
        with open(os.path.join(self.workdir, METRICS_FILE), 'a') as f:
            f.write(json.dumps(row, sort_keys=True) + '\n')
        for key, value in row.items():
            if key not in ('epoch', 'step'):
                self._tensorboard.scalar(key, value, row['step'])
        self._tensorboard.flush()

    def log_progress(self, step: int, progress: dict) -> None:
        """Throughput and the latest loss, to TensorBoard under progress/."""
        if not self.writer:
            return
        for key, value in progress.items():
            self._tensorboard.scalar(f'progress/{key}', value, step)
        self._tensorboard.flush()

    def log_diagnostics(self, step: int, rows: list[dict]) -> None:
        """Appends one row per norm layer to diagnostics.jsonl, and each value to TensorBoard."""
        if not self.writer:
            return
        with open(os.path.join(self.workdir, DIAGNOSTICS_FILE), 'a') as f:
            for row in rows:
                f.write(json.dumps(row, sort_keys=True) + '\n')
        for row in rows:
            for key, value in row.items():
                if key not in ('step', 'layer'):
                    self._tensorboard.scalar(f'diagnostics/{row["layer"]}/{key}', value, step)
        self._tensorboard.flush()

    def finish(self, summary: dict) -> None:
        """Writes summary.json last; only a complete run's summary says `complete`."""
        if not self.writer:
            return
        if self._tensorboard is not None:
            self._tensorboard.close()
        _write_json_atomically(os.path.join(self.workdir, SUMMARY_FILE), summary)
