"""The seed question: where does BN go in Conv1-ReLU1-Pool1-Conv2-ReLU2-Pool2-FC1-FC2?

Every placement (none, before_act, after_act, after_pool), each with and without a BN on the
output layer (FC2), on the embedded MNIST digits, 3 seeds each, 5 epochs: 24 runs. The sweep
prints test accuracy per configuration and writes the report (95% intervals, paired
comparisons, the effect of the output BN, curves, verdict).

Run (the README's main job):
    python scripts/sweep.py --config=configs/seed_question.py --sweep_dir=studies/seed_question \
        --report_dir=results/seed_question
Time: see WORKSPACE.md, "Studies" (measured on a 2-core CPU, in one process with 2
simulated devices).
"""

from bn_study import errors
from bn_study.nn import catalog as nn_catalog
from bn_study.studies import declare
from configs import default


def get_config(arg: str | None = None):
    """The base config every run of the study starts from."""
    del arg
    config = default.get_config()
    config.num_epochs = 5
    return config


VARIANTS = ('',)


def get_sweep(arg: str | None = None) -> list[dict]:
    """Placements x a norm on the logits x seeds, as override dicts keyed by dotted paths."""
    if (arg or '') not in VARIANTS:
        raise errors.ConfigError(f'configs/seed_question.py:{arg} is no variant; choose one '
                                  f'of: (none)')
    return declare.product({'model.bn_position': nn_catalog.BN_POSITIONS,
                          'model.bn_on_output': (False, True), 'seed': (0, 1, 2)})
