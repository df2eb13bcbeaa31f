"""The seed question against the learning rate: does BN, and where it sits, let the seed CNN
train at rates where it diverges without BN?

Every placement (none, before_act, after_act, after_pool) x learning rates 0.0125, 0.05,
0.2, 0.8, 3.2 (the default 0.05 and factors of 4 around it) x seeds: the full variant as a
fixed sweep, whose report draws final test accuracy against the rate per placement, diverged
runs marked; the cpu variant as a tuned comparison, whose stage 1 is that grid (on
validation) and whose stage 2 compares the placements each at its own best rate.

Published (../shared/REFERENCES.md): Ioffe & Szegedy 2015 (BN before the nonlinearity)
trained Inception with BN at 5x and 30x the base learning rate (BN-x5 73.0%, BN-x30 74.8%
top-1; plain Inception at 5x diverged); the caffenet-benchmark, the evidence of the
well-known Stack Overflow answer, has BN after the ReLU ahead of before it (ImageNet top-1
0.499 vs 0.474 without scale and bias, 0.493 vs 0.478 with).

Commands:
    python scripts/sweep.py --config=configs/paper/seed_question_lr.py:cpu \
        --sweep_dir=studies/seed_question_lr_cpu --report_dir=results/paper/seed_question_lr_cpu
    python scripts/sweep.py --config=configs/paper/seed_question_lr.py \
        --sweep_dir=gs://BUCKET/seed_question_lr --launch=tpu --tpu_name=... --tpu_zone=...
Variants:
    (none)  full: the official MNIST (60,000 / 10,000), 20 epochs, seeds 0-4: 100 runs.
            About 1 h on one GPU (estimated from the CPU's per-step cost; not measured).
    cpu     a tuned comparison (bn_study/studies/tuning.py) of the 4 placements on the
            embedded digits, 3 epochs: every placement at every rate on tuning seeds 100 and
            101 (40 runs), each placement's rate chosen on the validation split, then every
            placement at its own rate on seeds 0-3 (16 runs, one look), and the 6 pairs
            decided (better, worse, equivalent within ±0.5 points, or inconclusive),
            Holm-adjusted: 56 runs; 12 min 55 s on a 2-core CPU (measured, 2026-11-29). The published claims below that
            name a rate (BN against none at 0.05, 0.8 and 3.2) are checked on the tuning
            runs at that rate, 2 seeds; the one that names none (after_act against
            before_act) on the comparison runs, each placement at its own rate
            (analysis/tuned_report.claim_runs). (Before the protocol: the fixed grid, 5 epochs,
            seeds 0-2, 60 runs, 11 min 53 s measured.)
"""

from bn_study.analysis import report_spec
from bn_study.nn import catalog as nn_catalog
from bn_study.studies import declare, tuning
from configs import default
from configs.paper import common

LEARNING_RATES = (0.0125, 0.05, 0.2, 0.8, 3.2)
# The cpu variant's options: the placements, named as they are.
OPTIONS = {position: {'model.bn_position': position} for position in nn_catalog.BN_POSITIONS}
# The tuned comparison's equivalence margin, declared before the runs are seen: options
# within half a point of test accuracy of each other are called equivalent.
MARGIN = 0.005


def get_config(arg: str | None = None):
    variant = common.variant(arg, __file__)
    config = default.get_config()
    if variant == common.FULL:
        config.data.name = 'mnist'
        config.data.manual_dir = common.MNIST_MANUAL_DIR
        config.num_epochs = 20
    else:
        # 3 epochs, not the 5 of the fixed sweep: the tuned comparison's 56 runs should
        # finish in about 14 minutes on a 2-core CPU.
        config.num_epochs = 3
    return config


def get_sweep(arg: str | None = None) -> list[dict]:
    """The full variant's fixed sweep; the cpu variant is tuned (get_tuning) and refused."""
    common.full_only(arg, __file__)
    return declare.product({'model.bn_position': nn_catalog.BN_POSITIONS,
                          'optimizer.learning_rate': LEARNING_RATES, 'seed': range(5)})


def get_tuning(arg: str | None = None) -> tuning.Tuning | None:
    """The cpu variant: every placement at its own learning rate, chosen on validation; None
    for the full variant (its fixed sweep draws accuracy against every rate)."""
    if common.variant(arg, __file__) == common.FULL:
        return None
    # Two tuning seeds, not one: the claims at a fixed rate are checked on stage 1's runs
    # there, and pairing needs two seeds. One look at 4 comparison seeds: the time budget.
    return tuning.Tuning(OPTIONS, {'optimizer.learning_rate': LEARNING_RATES},
                         tuning_seeds=(100, 101), comparison_seeds=tuple(range(4)))


def get_report(arg: str | None = None) -> report_spec.ReportSpec:
    common.variant(arg, __file__)
    ioffe = 'Ioffe & Szegedy 2015 (Inception, ImageNet)'
    caffenet = 'caffenet-benchmark (CaffeNet128, ImageNet top-1)'
    at = lambda position, lr: {'model.bn_position': position, 'optimizer.learning_rate': lr}
    return report_spec.ReportSpec('model.bn_position', (
        report_spec.Claim(caffenet, '0.499 vs 0.474', {'model.bn_position': 'after_act'},
                        {'model.bn_position': 'before_act'}),
        # At the base rate only; the larger rates are the two claims below.
        report_spec.Claim(ioffe, 'BN-Baseline 72.7% vs Inception 72.2% at the same rate',
                        {'model.bn_position': 'before_act'}, {'model.bn_position': 'none'},
                        where={'optimizer.learning_rate': 0.05}),
        # BN-x5 and BN-x30 trained where plain Inception at 5x diverged: at the two largest
        # rates here (16x and 64x the default), BN before the activation against none.
        report_spec.Claim(ioffe, 'BN-x5 73.0% vs Inception-x5 diverged', at('before_act', 0.8),
                        at('none', 0.8)),
        report_spec.Claim(ioffe, 'BN-x30 74.8% vs Inception-x5 diverged', at('before_act', 3.2),
                        at('none', 3.2)),
    ), margin=MARGIN)
