"""ducha-aiki's caffenet-benchmark, batchnorm.md: BN before or after the ReLU, with and without
BN's learned scale and bias, in a plain CNN with BN after every conv and hidden dense layer.

Published (ImageNet top-1 at 128 px, CaffeNet, one run each): no BN 0.471; BN before ReLU
0.474 (no scale and bias), 0.478 (with); BN after ReLU 0.499 (no scale and bias), 0.493
(with). Their GoogLeNet128 goes the other way (no BN 0.619, before + scale and bias 0.603,
after 0.596). Solver: batch 256, lr 0.01 divided by 10 every 100k of 320k iterations,
momentum 0.9, weight decay 5e-4.

Commands:
    python scripts/sweep.py --config=configs/paper/caffenet_bn.py:cpu \
        --sweep_dir=studies/caffenet_bn_cpu --report_dir=results/paper/caffenet_bn_cpu
    python scripts/sweep.py --config=configs/paper/caffenet_bn.py --sweep_dir=... (GPU/TPU)
Variants:
    (none)  full: VGG-11 (width 64, hidden dense layers 512, 512, like CaffeNet's fc6/fc7) on
            CIFAR-10 with the benchmark's solver scaled to CIFAR: batch 256, lr 0.01
            divided by 10 at 31% and 62% and 94% of 64 epochs (their 100k, 200k, 300k of
            320k iterations), momentum 0.9, weight decay 5e-4 on every parameter, seeds
            0-4: 25 runs. About 2 h on one GPU (estimated, not measured). CIFAR-10 must be
            prepared in data.data_dir (tfds build cifar10) on a machine with network.
    cpu     a tuned comparison (bn_study/studies/tuning.py) of 5 options: no BN; BN before
            and BN after the ReLU, each without and with scale and bias. The seed CNN (BN
            after conv1, conv2, fc1) on the embedded digits, 3 epochs, the default solver
            but for the learning rate: each option's rate is chosen from 0.02, 0.05, 0.125
            on the validation split over tuning seed 100 (15 runs), then every option runs
            at its own rate on seeds 0-3 (20 runs, one look), and the 10 pairs are decided
            (better, worse, equivalent within ±0.5 points, or inconclusive), Holm-adjusted:
            35 runs; 8 min 54 s on a 2-core CPU (measured, 2026-11-29). The published
            claims below name no learning rate, so they are checked on the comparison runs,
            each option at its own rate, paired by seed (analysis/tuned_report.claim_runs).
            (Before the protocol: every option at the shared rate 0.05, 5 epochs, seeds
            0-2, 15 runs, 2 min 53 s measured; no claim was distinguishable.)
"""

from bn_study.analysis import report_spec
from bn_study.studies import declare, tuning
from configs import default
from configs.paper import common

_BARE = {'norm.use_scale': False, 'norm.use_bias': False}
_WITH_AFFINE = {'norm.use_scale': True, 'norm.use_bias': True}
AFFINE = [_BARE, _WITH_AFFINE]  # BN's learned scale and bias off, then on

# The cpu variant's options: no BN once (scale and bias do not apply, so it sets only the
# placement), then both placements without and with BN's learned scale and bias.
OPTIONS = {
    'none': {'model.bn_position': 'none'},
    'before_act, no scale/bias': {'model.bn_position': 'before_act', **_BARE},
    'before_act, scale+bias': {'model.bn_position': 'before_act', **_WITH_AFFINE},
    'after_act, no scale/bias': {'model.bn_position': 'after_act', **_BARE},
    'after_act, scale+bias': {'model.bn_position': 'after_act', **_WITH_AFFINE},
}
# The default 0.05 and factors of 2.5 around it: 6.25x from end to end.
LEARNING_RATES = (0.02, 0.05, 0.125)
# The tuned comparison's equivalence margin, declared before the runs are seen: options
# within half a point of test accuracy of each other are called equivalent.
MARGIN = 0.005


def get_config(arg: str | None = None):
    variant = common.variant(arg, __file__)
    config = default.get_config()
    if variant == common.FULL:
        config.data.name = 'cifar10'
        config.model.name = 'vgg'
        config.model.vgg.update(depth=11, width=64, hidden_features=(512, 512))
        config.batch_size = 256
        config.eval.batch_size = 1000
        config.num_epochs = 64
        config.optimizer.update(learning_rate=0.01, momentum=0.9, weight_decay=5e-4,
                                weight_decay_on='all')
        config.schedule.update(name='step', warmup_epochs=0.0,
                               step_boundaries_epochs=(20, 40, 60))
    else:
        # 3 epochs, not the 5 of the fixed sweep: the tuned comparison trains 35 runs, not
        # 15, and should finish in about 10 minutes on a 2-core CPU.
        config.num_epochs = 3
    return config


def get_sweep(arg: str | None = None) -> list[dict]:
    """The full variant's fixed sweep; the cpu variant is tuned (get_tuning) and refused."""
    common.full_only(arg, __file__)
    seeds = {'seed': range(5)}
    # No BN once (scale and bias do not apply), then both placements with and without them.
    return (declare.product([{'model.bn_position': 'none'}], seeds) +
            declare.product({'model.bn_position': ('before_act', 'after_act')}, AFFINE, seeds))


def get_tuning(arg: str | None = None) -> tuning.Tuning | None:
    """The cpu variant: every option at its own learning rate, chosen on validation; None
    for the full variant (its fixed sweep keeps the benchmark's one solver)."""
    if common.variant(arg, __file__) == common.FULL:
        return None
    # One tuning seed and one look at 4 comparison seeds: what fits the time budget.
    return tuning.Tuning(OPTIONS, {'optimizer.learning_rate': LEARNING_RATES},
                         tuning_seeds=(100,), comparison_seeds=tuple(range(4)))


def get_report(arg: str | None = None) -> report_spec.ReportSpec:
    common.variant(arg, __file__)
    caffenet = 'caffenet-benchmark (CaffeNet128, ImageNet top-1)'
    googlenet = 'caffenet-benchmark (GoogLeNet128, ImageNet top-1)'
    bare, affine = _BARE, _WITH_AFFINE
    at = lambda position, extra: {'model.bn_position': position, **extra}
    none = {'model.bn_position': 'none'}
    return report_spec.ReportSpec('model.bn_position', (
        report_spec.Claim(caffenet, '0.499 vs 0.474', at('after_act', bare),
                        at('before_act', bare)),
        report_spec.Claim(caffenet, '0.493 vs 0.478', at('after_act', affine),
                        at('before_act', affine)),
        report_spec.Claim(caffenet, '0.499 vs 0.471', at('after_act', bare), none),
        report_spec.Claim(caffenet, '0.474 vs 0.471', at('before_act', bare), none),
        report_spec.Claim(caffenet, '0.478 vs 0.474', at('before_act', affine),
                        at('before_act', bare)),
        report_spec.Claim(caffenet, '0.499 vs 0.493', at('after_act', bare),
                        at('after_act', affine)),
        report_spec.Claim(googlenet, '0.619 vs 0.603', none, at('before_act', affine)),
    ), margin=MARGIN)
