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
    cpu     the seed CNN (BN after conv1, conv2, fc1) on the embedded digits, 5 epochs, the
            default solver, seeds 0-2: 15 runs; 2 min 53 s on a 2-core CPU (measured).
"""

from bn_study.analysis import report_spec
from bn_study.studies import declare
from configs import default
from configs.paper import common

AFFINE = declare.zipped({'norm.use_scale': (False, True), 'norm.use_bias': (False, True)})


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
        config.num_epochs = 5
    return config


def get_sweep(arg: str | None = None) -> list[dict]:
    seeds = {'seed': range(5) if common.variant(arg, __file__) == common.FULL else range(3)}
    # No BN once (scale and bias do not apply), then both placements with and without them.
    return (declare.product([{'model.bn_position': 'none'}], seeds) +
            declare.product({'model.bn_position': ('before_act', 'after_act')}, AFFINE, seeds))


def get_report(arg: str | None = None) -> report_spec.ReportSpec:
    del arg
    caffenet = 'caffenet-benchmark (CaffeNet128, ImageNet top-1)'
    googlenet = 'caffenet-benchmark (GoogLeNet128, ImageNet top-1)'
    bare = {'norm.use_scale': False, 'norm.use_bias': False}
    affine = {'norm.use_scale': True, 'norm.use_bias': True}
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
    ))
