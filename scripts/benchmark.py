"""Throughput of the project's training step, evaluation step and input pipeline, side by
side with the same network in PyTorch eager, and the ratios the targets are stated in.

    python scripts/benchmark.py --config=configs/default.py --devices=1,2 --rounds=3

One fresh process per measurement and device count (simulated CPU devices on a CPU, the
first N accelerators elsewhere), rounds alternating; medians printed. --config.a=b picks the
model, placement, norm kind and batch. The PyTorch peer runs where torch is installed
(optional: pip install torch==2.13.0); --vmap_seeds=K adds K seeds vmapped against sequential.
Each measurement is `python -m bn_study.perf.child`; the steps are bn_study.perf.benchmark's.
"""

import sys

from absl import flags
from ml_collections import config_flags

from bn_study import cli
from bn_study.perf import benchmark

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/default.py', 'Config file.',
                                          lock_config=True)
_DEVICES = flags.DEFINE_list('devices', ['1', '2'], 'Device counts to measure the project on.')
_STEPS = flags.DEFINE_integer('steps', 40, 'Timed training steps per measurement.',
                              lower_bound=1)
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed calls after the compiling one.',
                               lower_bound=0)
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Rounds over all measurements; medians printed.',
                               lower_bound=1)
_NO_NORM = flags.DEFINE_bool('no_norm_baseline', True, 'Also measure model.bn_position=none.')
_TORCH = flags.DEFINE_bool('torch', True, 'Also measure the PyTorch peer, if torch imports.')
_VMAP_SEEDS = flags.DEFINE_integer('vmap_seeds', 0, 'K > 1: also K seeds vmapped against K '
                                   'sequential steps (scripts/sweep.py --vmap_seeds).',
                                   lower_bound=0)
_JSON = flags.DEFINE_string('json', '', 'Also write every figure to this JSON file.')


def main(argv):
    del argv
    benchmark.run(_CONFIG.value, config_flags.get_config_filename(flags.FLAGS['config']),
                  cli.config_overrides(sys.argv), _DEVICES.value, _STEPS.value, _WARMUP.value,
                  _ROUNDS.value, _NO_NORM.value, _TORCH.value, _VMAP_SEEDS.value, _JSON.value)


if __name__ == '__main__':
    cli.run(main)
