"""Times the project's training step and prints the figures side by side.

    python scripts/benchmark.py --config=configs/default.py --seeds=4 --steps=30

Today: K seeds trained by K sequential calls of the pmapped step against one call of the
vmapped step (--vmap_seeds of scripts/sweep.py), and their throughput ratio. --config.a=b
overrides pick the model, placement, norm kind, batch size and device count.
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_study import benchmark, choices, cli, sweep  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/default.py', 'Config file.',
                                          lock_config=True)
_SEEDS = flags.DEFINE_integer('seeds', 4, 'Runs trained at once by the vmapped step.')
_STEPS = flags.DEFINE_integer('steps', 30, 'Timed steps (after one compiling step).')
_JSON = flags.DEFINE_string('json', '', 'Also write the figures to this JSON file.')


def main(argv):
    del argv
    if _SEEDS.value < 2 or _STEPS.value < 1:
        raise choices.ConfigError(f'--seeds={_SEEDS.value} must be at least 2 and '
                                  f'--steps={_STEPS.value} at least 1')
    base = _CONFIG.value
    configs = [sweep.apply_overrides(base, {'seed': base.seed + k}) for k in range(_SEEDS.value)]
    with tempfile.TemporaryDirectory() as workdir:
        timings = benchmark.vmapped_against_sequential(configs, workdir, _STEPS.value)
    device = jax.devices()[0]
    print(f'{base.model.name} {base.model.bn_position} norm={base.norm.kind} '
          f'batch={base.batch_size} devices={len(jax.local_devices())} '
          f'({device.platform}: {device.device_kind})')
    for t in timings:
        print(f'{t.name:15s} {t.examples_per_s:9.0f} examples/s  {t.step_time_ms:8.1f} ms/call  '
              f'compile {t.compile_s:5.1f} s')
    ratio = timings[1].examples_per_s / timings[0].examples_per_s
    print(f'vmapped / sequential throughput: {ratio:.2f}x')
    if _JSON.value:
        with open(_JSON.value, 'w') as f:
            json.dump({'timings': [t.__dict__ for t in timings], 'vmapped_over_sequential': ratio,
                       'device': device.device_kind, 'config': json.loads(base.to_json())}, f,
                      indent=2)


if __name__ == '__main__':
    cli.run(main)
