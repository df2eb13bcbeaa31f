"""The seed question: where does BN go in Conv1-ReLU1-Pool1-Conv2-ReLU2-Pool2-FC1-FC2?

A tuned comparison (bn_study/studies/tuning.py) on the embedded MNIST digits. The options:
the four uniform placements (no BN, BN before every activation as the BN paper puts it,
after every activation, after every pool) and two published layouts as presets
(bn_study/nn/catalog.py): the well-known Stack Overflow answer's, as it lists it (BN after
ReLU1, ReLU2, FC1 and FC2), and airbench's (conv, pool, BN, activation). Each option gets
its own learning rate, chosen on the validation split (10% of the training digits) over
one tuning seed from a grid spanning 10x; then every option runs at its own rate on 4
other seeds, and every pair is decided (better, worse, equivalent within ±0.5 points, or
inconclusive with the seeds it would take), Holm-adjusted across the 15 pairs.

Until issue 17 the fifth option was "after_act+output" (after every activation and on
FC2), the nearest layout to the answer's before per-layer placements existed; `so_answer`
differs from it only in FC1's norm, which it puts right after the dense layer (before
FC1's ReLU), as the answer writes "after FC1". Which layer's norm matters is the layer
ablation's question (configs/placement_ablation.py).

Scaled to finish within about 10 minutes on a 2-core CPU, setup included: 2 epochs, one
tuning seed, one look at 4 comparison seeds (42 runs). The `:decisive` variant is the same
protocol with 2 tuning seeds and looks at 5, 10 and 20 comparison seeds; up to 168 runs,
about 30 min here if every look is taken (estimated from the main job's per-run times, not
run).

Run (the README's main job):
    python scripts/sweep.py --config=configs/seed_question.py --sweep_dir=studies/seed_question \
        --report_dir=results/seed_question
Time: see WORKSPACE.md, "Studies" (measured on a 2-core CPU, in one process with 2
simulated devices).
"""

from bn_study import errors
from bn_study.analysis import report_spec
from bn_study.studies import tuning
from configs import default

VARIANTS = ('', 'decisive')

OPTIONS = {
    'none': {'model.bn_position': 'none', 'model.bn_on_output': False},
    'before_act': {'model.bn_position': 'before_act', 'model.bn_on_output': False},
    'after_act': {'model.bn_position': 'after_act', 'model.bn_on_output': False},
    'after_pool': {'model.bn_position': 'after_pool', 'model.bn_on_output': False},
    # The presets (bn_study/nn/catalog.py): the well-known answer's layout as it lists it
    # (BN after ReLU1, ReLU2, FC1 and FC2), and airbench's (conv, pool, BN, activation).
    'so_answer': {'model.bn_position': 'so_answer', 'model.bn_on_output': False},
    'airbench': {'model.bn_position': 'airbench', 'model.bn_on_output': False},
}


def _check(arg: str | None) -> str:
    if (arg or '') not in VARIANTS:
        raise errors.ConfigError(f'configs/seed_question.py:{arg} is no variant; choose one '
                                 f'of: (none), decisive')
    return arg or ''


def get_config(arg: str | None = None):
    """The base config every run of the study starts from."""
    _check(arg)
    config = default.get_config()
    config.num_epochs = 2
    # Only what the report reads: norm statistics after the last step, one checkpoint at
    # the end (a killed run restarts; a run takes seconds).
    config.diagnostics.every_steps = 0
    config.checkpoint.every_steps = 0
    return config


def get_tuning(arg: str | None = None) -> tuning.Tuning:
    """The options, the learning-rate grid, and the tuning and comparison seeds."""
    if _check(arg) == 'decisive':
        return tuning.Tuning(OPTIONS, {'optimizer.learning_rate': (0.02, 0.05, 0.1, 0.2)},
                             tuning_seeds=(100, 101), comparison_seeds=tuple(range(20)),
                             looks=(5, 10, 20))
    return tuning.Tuning(OPTIONS, {'optimizer.learning_rate': (0.03, 0.1, 0.3)},
                         tuning_seeds=(100,), comparison_seeds=tuple(range(4)))


def get_report(arg: str | None = None) -> report_spec.ReportSpec:
    _check(arg)
    return report_spec.ReportSpec(compare='model.bn_position', margin=0.005)
