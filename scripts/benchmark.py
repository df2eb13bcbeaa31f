"""Throughput of the project's training step, evaluation step and input pipeline, side by
side with the same network in PyTorch eager, and the ratios the targets are stated in.

    python scripts/benchmark.py --config=configs/default.py --devices=1,2 --rounds=3

One fresh process per measurement and device count (simulated CPU devices on a CPU, the
first N accelerators elsewhere), rounds alternating; medians printed. --config.a=b picks the
model, placement, norm kind and batch. The PyTorch peer runs where torch is installed
(optional: pip install torch==2.13.0); --vmap_seeds=K adds K seeds vmapped against sequential.
"""

import json
import os
import sys
import tempfile

from absl import flags
from ml_collections import config_flags

from bn_study.perf import benchmark
from bn_study import cli
from bn_study.studies import launch
from bn_study.studies import declare
from bn_study import errors
from bn_study import schema
from bn_study.training import catalog as training_catalog

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
_CHILD = flags.DEFINE_enum('child', '', ['', 'project', 'torch', 'vmap'],
                           'Internal: measure one thing in this process and print it.')


def _child(config) -> None:
    if _CHILD.value == 'torch':
        from bn_study.training import data
        from bn_study.perf import torch_peer
        info = data.DATASETS.get(config.data.name)
        figures = torch_peer.measure(config, info.image_shape, info.num_classes, _STEPS.value,
                                     _WARMUP.value)
    else:
        from bn_study.perf import timing
        with tempfile.TemporaryDirectory() as workdir:
            if _CHILD.value == 'project':
                figures = timing.measure(config, workdir, _STEPS.value, _WARMUP.value)
            else:
                configs = [declare.apply_overrides(config, {'seed': config.seed + k})
                           for k in range(_VMAP_SEEDS.value)]
                figures = timing.vmapped_against_sequential(configs, workdir, _STEPS.value,
                                                            _WARMUP.value)
    print(benchmark.MARKER + json.dumps(figures), flush=True)


def _torch_available(config) -> bool:
    from bn_study.perf import torch_peer
    reason = torch_peer.unsupported(config)
    try:
        import torch  # noqa: F401
    except ImportError:
        reason = 'torch is not installed (pip install torch==2.13.0)'
    if reason:
        print(f'PyTorch peer: none ({reason})')
    return not reason


def main(argv):
    del argv
    config = _CONFIG.value
    schema.validate(config)
    if _CHILD.value:
        _child(config)
        return
    devices = benchmark.parse_devices(_DEVICES.value)
    if config.data.name not in training_catalog.DATASETS:
        raise errors.ConfigError(f'config.data.name={config.data.name}: the benchmark needs a '
                                  f'catalogue dataset: {", ".join(training_catalog.DATASETS)}')
    common = (f'--steps={_STEPS.value}', f'--warmup={_WARMUP.value}',
              # Cold compiles: the compile figures are then the real ones.
              '--config.compilation_cache_dir=')
    measurements = benchmark.plan(
        config, config_flags.get_config_filename(flags.FLAGS['config']),
        launch.config_overrides(sys.argv), devices, _NO_NORM.value,
        _TORCH.value and _torch_available(config), _VMAP_SEEDS.value, common)
    rounds = benchmark.side_by_side(measurements, _ROUNDS.value)
    summary = {label: benchmark.medians(figures) for label, figures in rounds.items()}
    first = next((s for s in summary.values() if 'platform' in s and 'device_kind' in s), {})
    print(f'\n{config.model.name} on {config.data.name}, norm={config.norm.kind}, batch '
          f'{config.batch_size}; {first.get("platform", "?")} ({first.get("device_kind", "?")}),'
          f' {len(os.sched_getaffinity(0))} cores; medians of {_ROUNDS.value} rounds of '
          f'{_STEPS.value} steps')
    print('\n'.join(benchmark.table(measurements, summary)))
    found = benchmark.ratios(measurements, summary)
    print('\n'.join(f'{name}: {value:.2f}x' for name, value in found.items()))
    if _JSON.value:
        with open(_JSON.value, 'w') as f:
            json.dump({'config': json.loads(config.to_json()), 'rounds': rounds,
                       'medians': summary, 'ratios': found}, f, indent=2)


if __name__ == '__main__':
    cli.run(main)
