"""A run's record in its workdir: config.json, metrics.jsonl, diagnostics.jsonl, TensorBoard
events, summary.json; their names, statuses and readers (training.run_record writes them).

summary.json is written last and atomically; its `status` is `complete` only for a run
that finished. Everything downstream (studies, reports) reads these files, never logs.
Workdirs are etils.epath paths: local folders or cloud buckets (gs://...) alike.
"""

import json
import os
import subprocess

import ml_collections
from etils import epath

from bn_study import errors
from bn_study.paths import REPO

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'
DIAGNOSTICS_FILE = 'diagnostics.jsonl'
SUMMARY_FILE = 'summary.json'
CHECKPOINT_DIR = 'checkpoints'  # orbax's folder; training.checkpoint writes it
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


# Config keys renamed since records were first written: old dotted key -> new one. Records
# written before a rename load (in reports, resumption and sweep checks) under the new name.
RENAMED_KEYS = {
    'norm.batch_stats': 'norm.stats_scope',  # was named like Flax's `batch_stats` collection
}


# Config keys added since records were first written, with the value that does what the
# code did before them: a record without the key loads with it (so an older sweep dir still
# resumes, skips and reports instead of differing in the new key).
ADDED_KEYS = {
    'optimizer.agc_clipping': 0.0,  # issue 18: no gradient clipping
    'optimizer.agc_eps': 1e-3,  # read only when clipping
}


def upgrade_config(saved: dict) -> dict:
    """A saved config.json's tree with every renamed key under its current name, and every
    added key that it lacks at the value that reproduces it."""
    saved = json.loads(json.dumps(saved))  # a deep copy; the caller's tree stays as read
    for key, value in ADDED_KEYS.items():
        *parents, leaf = key.split('.')
        node = saved
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(leaf, value)
    for old, new in RENAMED_KEYS.items():
        *old_parents, old_leaf = old.split('.')
        node = saved
        for key in old_parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or old_leaf not in node:
            continue
        value = node.pop(old_leaf)
        *new_parents, new_leaf = new.split('.')
        target = saved
        for key in new_parents:
            target = target.setdefault(key, {})
        target.setdefault(new_leaf, value)
    return saved


def config_differences(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
    """Dotted keys whose values differ between a saved config.json (its renamed keys under
    their current names) and `config`."""
    def flat(tree, prefix=''):
        items = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flat(value, f'{prefix}{key}.'))
            else:
                items[f'{prefix}{key}'] = value
        return items
    old, new = flat(upgrade_config(saved)), flat(json.loads(config.to_json()))
    return sorted(k for k in old.keys() | new.keys() if old.get(k, '<absent>') != new.get(
        k, '<absent>'))


def check_resumable(workdir, config: ml_collections.ConfigDict) -> None:
    """Refuses a workdir whose run finished, or whose run has a different config."""
    previous = read_summary(workdir)
    if previous is not None and previous['status'] in FINISHED:
        raise errors.WorkdirError(
            f'workdir {workdir} already holds a {previous["status"]} run; '
            'choose a new --workdir or delete this one')
    saved = epath.Path(workdir) / CONFIG_FILE
    if saved.exists():
        differences = config_differences(json.loads(saved.read_text()), config)
        if differences:
            raise errors.WorkdirError(
                f'workdir {workdir} holds a run with a different config (keys: '
                f'{", ".join(differences)}); rerun with its config to resume it, or choose a '
                'new --workdir')


def git_commit() -> str:
    """The code's commit, with '+dirty' for uncommitted changes; 'unknown' outside git."""
    try:
        run = lambda *a: subprocess.run(['git', *a], cwd=REPO, capture_output=True,
                                        text=True, check=True).stdout.strip()
        commit = run('rev-parse', 'HEAD')
        dirty = run('status', '--porcelain', '--untracked-files=no')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return commit + ('+dirty' if dirty else '')


def write_summary(workdir, summary: dict) -> None:
    """Writes summary.json, atomically: the last file of a record."""
    write_text_atomically(epath.Path(workdir) / SUMMARY_FILE,
                          json.dumps(summary, indent=2, sort_keys=True))


def saved_steps(workdir) -> list[int]:
    """The steps of finished checkpoints in a workdir, oldest first, read from the folder
    names alone (cheap: no orbax manager, nothing created). In-flight saves are temporary
    folders with other names, and set-aside ones end in '.unreadable'."""
    directory = epath.Path(workdir) / CHECKPOINT_DIR
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
