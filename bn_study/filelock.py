"""An exclusive lock between processes on one machine, for files several of them write."""

import contextlib
import fcntl
import os

from etils import epath


@contextlib.contextmanager
def exclusive(directory, name: str):
    """Holds <directory>/<name> locked (flock) for the block; on a bucket (gs://), which has
    no locks, it only makes sure the directory exists. The kernel releases the lock when
    the process dies, so a killed holder never blocks the others."""
    directory = epath.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if '://' in os.fspath(directory):
        yield
        return
    with open(directory / name, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
