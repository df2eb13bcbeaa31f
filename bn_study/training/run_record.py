"""Writes a run's record (bn_study.records names its files and reads them), with TensorBoard
events beside the JSON files."""

import json
import os
import platform

import flax
import jax
import ml_collections
from etils import epath
from flax.metrics import tensorboard

from bn_study import records


def cpu_model() -> str:
    """The host CPU's model name (Linux's /proc/cpuinfo; else what platform says)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Versions and hardware that a result depends on (reports name the machine from it)."""
    return {'jax': jax.__version__, 'flax': flax.__version__, 'git_commit': records.git_commit(),
            'backend': jax.default_backend(), 'process_count': jax.process_count(),
            'device_kind': jax.devices()[0].device_kind, 'cpu_model': cpu_model(),
            'cpu_count': os.cpu_count()}


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
            stale = [self.workdir / name for name in (records.SUMMARY_FILE, records.METRICS_FILE,
                                                       records.DIAGNOSTICS_FILE)]
            for path in stale + list(self.workdir.glob('events.out.tfevents.*')):
                if path.exists():
                    path.unlink()
            (self.workdir / records.CONFIG_FILE).write_text(config.to_json(indent=2, sort_keys=True))
        else:
            for name in (records.METRICS_FILE, records.DIAGNOSTICS_FILE):
                kept = [row for row in records.read_metrics(self.workdir, name)
                        if row['step'] <= resume_step]
                records.write_text_atomically(self.workdir / name, ''.join(
                    json.dumps(row, sort_keys=True) + '\n' for row in kept))
            summary = self.workdir / records.SUMMARY_FILE
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
        self._append(records.METRICS_FILE, [row])
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
        self._append(records.DIAGNOSTICS_FILE, rows)
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
        records.write_summary(self.workdir, summary)
