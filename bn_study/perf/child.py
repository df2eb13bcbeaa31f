"""One measurement of the benchmark, in a fresh process (the device count is fixed when JAX
starts): measures one thing and prints one line `FIGURES {json}`.

    python -m bn_study.perf.child --config=configs/default.py --kind=project|torch|vmap \
        [--steps=40] [--warmup=3] [--vmap_seeds=K] [--config.a=b ...]

benchmark.run_child starts it for each measurement of benchmark.plan; bn_study.perf.timing
(the project) and bn_study.perf.torch_peer (PyTorch) measure.
"""

import json
import tempfile

KINDS = ('project', 'torch', 'vmap')


def measure(config, kind: str, steps: int, warmup: int, vmap_seeds: int = 0) -> dict:
    """The figures of one measurement: the project's training (project), the PyTorch peer's
    (torch), or vmap_seeds seeds vmapped against the same seeds one after another (vmap)."""
    if kind == 'torch':
        from bn_study.perf import torch_peer
        from bn_study.training import data
        info = data.DATASETS.get(config.data.name)
        return torch_peer.measure(config, info.image_shape, info.num_classes, steps, warmup)
    from bn_study.perf import timing
    from bn_study.studies import declare
    with tempfile.TemporaryDirectory() as workdir:
        if kind == 'project':
            return timing.measure(config, workdir, steps, warmup)
        configs = [declare.apply_overrides(config, {'seed': config.seed + k})
                   for k in range(vmap_seeds)]
        return timing.vmapped_against_sequential(configs, workdir, steps, warmup)


def main() -> None:
    from absl import flags
    from ml_collections import config_flags

    from bn_study import cli, schema
    from bn_study.perf import benchmark

    config = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
    kind = flags.DEFINE_enum('kind', None, list(KINDS), 'What to measure.')
    steps = flags.DEFINE_integer('steps', 40, 'Timed training steps.', lower_bound=1)
    warmup = flags.DEFINE_integer('warmup', 3, 'Untimed calls after the compiling one.',
                                  lower_bound=0)
    vmap_seeds = flags.DEFINE_integer('vmap_seeds', 0, 'vmap: the seeds vmapped together.',
                                      lower_bound=0)
    flags.mark_flags_as_required(['config', 'kind'])

    def child(argv):
        del argv
        schema.validate(config.value)
        figures = measure(config.value, kind.value, steps.value, warmup.value, vmap_seeds.value)
        print(benchmark.MARKER + json.dumps(figures), flush=True)

    cli.run(child)


if __name__ == '__main__':
    main()
