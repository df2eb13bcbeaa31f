"""The seed question: where does BN go in Conv1-ReLU1-Pool1-Conv2-ReLU2-Pool2-FC1-FC2?

Every placement (none, before_act, after_act, after_pool) on the embedded MNIST digits,
3 seeds each, 5 epochs; the sweep prints test accuracy per placement and writes the report
(95% intervals, paired comparisons, curves, verdict).

Run: python scripts/sweep.py --config=configs/seed_question.py --sweep_dir=studies/seed_question \
         --report_dir=results/seed_question
Time: 10 min 9 s on a 2-core CPU with 2 workers (12 runs; 2026-11-25, a slow day for that
machine, whose earlier sessions ran the study in 6-7 minutes in one process).

Variant `configs/seed_question.py:output_bn` also sweeps model.bn_on_output (False, True):
24 runs, about twice the time; not yet run here (WORKSPACE.md, "Not yet built").
"""

from bn_study import choices, sweep
from configs import default


def get_config(arg: str | None = None):
    """The base config every run of the study starts from."""
    del arg
    config = default.get_config()
    config.num_epochs = 5
    return config


VARIANTS = ('', 'output_bn')


def get_sweep(arg: str | None = None) -> list[dict]:
    """Placements (x a norm on the logits, for `output_bn`) x seeds, as override dicts keyed
    by dotted config paths."""
    if (arg or '') not in VARIANTS:
        raise choices.ConfigError(f'configs/seed_question.py:{arg} is no variant; choose one '
                                  f'of: (none), {", ".join(VARIANTS[1:])}')
    output = {'model.bn_on_output': (False, True)} if arg == 'output_bn' else {}
    return sweep.product({'model.bn_position': choices.BN_POSITIONS, **output,
                          'seed': (0, 1, 2)})
