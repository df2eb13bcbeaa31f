"""A run's record in its workdir: config.json, metrics.jsonl, diagnostics.jsonl, TensorBoard
events, summary.json.

summary.json is written last and atomically; its `status` is `complete` only for a run
that finished. Everything downstream (studies, reports) reads these files, never logs.
Workdirs are etils.epath paths: local folders or cloud buckets (gs://...) alike.
"""

import json
import os
import subprocess

import flax
import jax
import ml_collections
from etils import epath
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


def read_summary(workdir) -> dict | None:
    """The run's summary, or None if it has none (never started, running, or killed)."""
    path = epath.Path(workdir) / SUMMARY_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def read_metrics(workdir, name: str = METRICS_FILE) -> list[dict]:
    """The rows of metrics.jsonl (or of diagnostics.jsonl, by name); [] if there are none.

    A last line cut short by a kill is dropped; a damaged line elsewhere raises.
    """
    path = epath.Path(workdir) / name
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in lines[:-1]]
    try:
        rows.extend(json.loads(line) for line in lines[-1:])
    except json.JSONDecodeError:
        pass
    return rows


def write_text_atomically(path, text: str) -> None:
    """Readers see the old file or the new one, never a partial one (a rename on local
    disks; on a bucket, whose renames copy, the object appears whole). The temporary name
    is per process, so concurrent writers never share one."""
    path = epath.Path(path)
    tmp = path.parent / f'.{path.name}.{os.getpid()}.tmp'
    tmp.write_text(text)
    tmp.replace(path)


def config_differences(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
    """Dotted keys whose values differ between a saved config.json and `config`."""
    def flat(tree, prefix=''):
        items = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flat(value, f'{prefix}{key}.'))
            else:
                items[f'{prefix}{key}'] = value
        return items
    old, new = flat(saved), flat(json.loads(config.to_json()))
    return sorted(k for k in old.keys() | new.keys() if old.get(k, '<absent>') != new.get(
        k, '<absent>'))


def check_resumable(workdir, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir whose run finished, or whose run has a different config."""
    previous = read_summary(workdir)
    if previous is not None and previous['status'] in FINISHED:
        raise choices.ConfigError(
            f'workdir {workdir} already holds a {previous["status"]} run; '
            'choose a new --workdir or delete this one')
    saved = epath.Path(workdir) / CONFIG_FILE
    if saved.exists():
        differences = config_differences(json.loads(saved.read_text()), config)
        if differences:
            raise choices.ConfigError(
                f'workdir {workdir} holds a run with a different config (keys: '
                f'{", ".join(differences)}); rerun with its config to resume it, or choose a '
                'new --workdir')


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

    def __init__(self, workdir, writer: bool = True):
        self.workdir = epath.Path(workdir)
        self.writer = writer
        self._tensorboard = None

    def start(self, config: ml_collections.ConfigDict, resume_step: int | None) -> None:
        """Starts afresh (resume_step None) or keeps the rows up to a checkpoint's step.

        Call check_resumable first. A resumed run drops the rows logged after its checkpoint,
        which it will log again; TensorBoard gets a new events file, so those steps appear
        twice there with the same values.
        """
        if not self.writer:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:  # a run that never checkpointed starts again from scratch
            stale = [self.workdir / name for name in (SUMMARY_FILE, METRICS_FILE,
                                                       DIAGNOSTICS_FILE)]
            for path in stale + list(self.workdir.glob('events.out.tfevents.*')):
                if path.exists():
                    path.unlink()
            (self.workdir / CONFIG_FILE).write_text(config.to_json(indent=2, sort_keys=True))
        else:
            for name in (METRICS_FILE, DIAGNOSTICS_FILE):
                kept = [row for row in read_metrics(self.workdir, name)
                        if row['step'] <= resume_step]
                write_text_atomically(self.workdir / name, ''.join(
                    json.dumps(row, sort_keys=True) + '\n' for row in kept))
            summary = self.workdir / SUMMARY_FILE
            if summary.exists():  # a failed attempt's summary; this attempt writes its own
                summary.unlink()
        self._tensorboard = tensorboard.SummaryWriter(os.fspath(self.workdir))

    def _append(self, name: str, rows: list[dict]) -> None:
        with (self.workdir / name).open('a') as f:
            f.write(''.join(json.dumps(row, sort_keys=True) + '\n' for row in rows))

    def log_epoch(self, row: dict) -> None:
        """Appends one epoch's metrics (flushed, so a crash keeps earlier epochs)."""
        if not self.writer:
            return
        self._append(METRICS_FILE, [row])
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
        self._append(DIAGNOSTICS_FILE, rows)
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
        write_text_atomically(self.workdir / SUMMARY_FILE,
                               json.dumps(summary, indent=2, sort_keys=True))
