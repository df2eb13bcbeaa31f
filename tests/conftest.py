"""Test set-up: 4 simulated CPU devices (before JAX starts) and one shared TFDS data_dir."""

import os

# Must precede the first JAX import of the session, so it lives here, not in a fixture.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4').strip()

import pytest  # noqa: E402

from bn_study.paths import REPO  # noqa: E402
from configs import default  # noqa: E402

# The runs' own persistent compilation cache, for this process from its first compile (a
# config's setting applies only before then); subprocesses read it from their configs.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', default.get_config().compilation_cache_dir)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

SHARED_MNIST = os.path.join(REPO, '..', 'shared', 'datasets', 'mnist')


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
    """A TFDS data_dir in which the embedded digits get registered once per session."""
    return str(tmp_path_factory.mktemp('tensorflow_datasets'))


@pytest.fixture
def make_config(data_dir):
    """A default config on the shared data_dir, with dotted-path overrides."""
    from bn_study.studies import declare

    def make(**overrides):
        config = default.get_config()
        config.cpu_devices = 0  # this process's JAX has the 4 devices XLA_FLAGS gave it
        config.data.data_dir = data_dir
        return declare.apply_overrides(config, {k.replace('__', '.'): v
                                              for k, v in overrides.items()})
    return make
