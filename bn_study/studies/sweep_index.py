"""The sweep dir's own files: sweep.json (the base config and every run's overrides) and
index.csv (one row per run: name, swept values, status, headline metrics).

Both are rebuilt whole from the run records and written atomically, under an exclusive lock
on local disks, so any number of workers may update them at once: a reader sees a complete
table, and the last writer's table includes every record finished before it. On a bucket
(gs://) there is no lock; writes stay whole, and the launcher rewrites the index after every
run, so it catches up.
"""

import csv
import io
import json

import ml_collections
from etils import epath

from bn_study import errors, filelock, records

MANIFEST_FILE = 'sweep.json'
INDEX_FILE = 'index.csv'
LOCK_FILE = '.sweep.lock'
PENDING = 'pending'  # nothing on disk yet
INTERRUPTED = 'interrupted'  # started, no summary: running now, or killed
HEADLINE = ('final_test_accuracy', 'final_val_accuracy', 'selected_test_accuracy',
            'final_test_loss', 'final_train_loss',
            'diverged_at_step', 'wall_time_s', 'error')


def locked(sweep_dir):
    """An exclusive lock on the sweep dir's files (local disks; a no-op on buckets)."""
    return filelock.exclusive(sweep_dir, LOCK_FILE)


def read_manifest(sweep_dir) -> dict | None:
    path = epath.Path(sweep_dir) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.exists() else None


def record_sweep(sweep_dir, base: ml_collections.ConfigDict, runs,
                 report_spec: dict | None = None) -> None:
    """Adds the runs to sweep.json, and the study's report spec (report_spec.ReportSpec as
    JSON: what the report compares and checks) if given. A sweep dir belongs to one base
    config: another sweep's runs (a different base config) are refused, naming the differing
    keys. Adding runs (more seeds, another learning rate) to the same base is fine."""
    with locked(sweep_dir):
        manifest = read_manifest(sweep_dir) or {'base_config': json.loads(base.to_json()),
                                                'runs': {}}
        differences = records.config_differences(manifest['base_config'], base)
        if differences:
            raise errors.WorkdirError(
                f'{sweep_dir} holds another sweep (its base config differs in: '
                f'{", ".join(differences)}); use a new --sweep_dir')
        for run in runs:
            manifest['runs'][run.name] = run.overrides
        if report_spec is not None:
            manifest['report'] = report_spec
        records.write_text_atomically(epath.Path(sweep_dir) / MANIFEST_FILE,
                          json.dumps(manifest, indent=2, sort_keys=True, default=list))


def check_same_base(sweep_dir, base: ml_collections.ConfigDict) -> None:
    """record_sweep's refusal, read-only (for --dry_run)."""
    manifest = read_manifest(sweep_dir)
    if manifest:
        differences = records.config_differences(manifest['base_config'], base)
        if differences:
            raise errors.WorkdirError(
                f'{sweep_dir} holds another sweep (its base config differs in: '
                f'{", ".join(differences)}); use a new --sweep_dir')


def _row(sweep_dir: epath.Path, name: str, overrides: dict) -> dict:
    summary = records.read_summary(sweep_dir / name)
    if summary is None:
        started = (sweep_dir / name / records.CONFIG_FILE).exists()
        summary = {'status': INTERRUPTED if started else PENDING}
    steps = ([] if summary['status'] in records.FINISHED
             else records.saved_steps(sweep_dir / name))
    swept = {key: json.dumps(value) if isinstance(value, (list, tuple)) else value
             for key, value in overrides.items()}
    return {'run': name, 'status': summary['status'], **swept,
            **{key: summary.get(key, '') for key in HEADLINE},
            'checkpoint_step': steps[-1] if steps else ''}


def update_index(sweep_dir) -> list[dict]:
    """Rewrites index.csv from the manifest and every run's record; returns its rows."""
    sweep_dir = epath.Path(sweep_dir)
    with locked(sweep_dir):
        manifest = read_manifest(sweep_dir)
        if manifest is None:
            return []
        rows = [_row(sweep_dir, name, overrides)
                for name, overrides in sorted(manifest['runs'].items())]
        swept = dict.fromkeys(key for overrides in manifest['runs'].values() for key in overrides)
        columns = ['run', 'status', *swept, *HEADLINE, 'checkpoint_step']
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, restval='', lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)
        records.write_text_atomically(sweep_dir / INDEX_FILE, text.getvalue())
    return rows


def read_index(sweep_dir) -> list[dict]:
    with (epath.Path(sweep_dir) / INDEX_FILE).open() as f:
        return list(csv.DictReader(f))
