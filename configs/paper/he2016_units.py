"""He et al. 2016, Identity Mappings in Deep Residual Networks, Table 2: where BN and ReLU go in
a residual unit (the five units of their Figure 4), at two depths.

Published (CIFAR-10 test error %, median of 5 runs), ResNet-110 / ResNet-164:
original (post-activation) 6.61 / 5.93; BN after addition 8.17 / 6.50; ReLU before
addition 7.84 / 6.14; ReLU-only pre-activation 6.71 / 5.91; full pre-activation 6.37 / 5.46.
gcr/torch-residual-networks (one run each) adds that at 20 layers the units agree within
about 0.5%, while at 110 layers BN after the addition costs 5-6 points: depth amplifies it.

Commands:
    python scripts/sweep.py --config=configs/paper/he2016_units.py:cpu \
        --sweep_dir=studies/he2016_units_cpu --report_dir=results/paper/he2016_units_cpu
    python scripts/sweep.py --config=configs/paper/he2016_units.py --sweep_dir=... (GPU/TPU)
Variants:
    (none)  full: CIFAR-10 with 4-pixel pad, crop and flip; ResNet-110 (basic units) and
            ResNet-164 (bottleneck units), width 16; SGD momentum 0.9, weight decay 1e-4,
            batch 128, lr 0.1 divided by 10 at 32k and 48k iterations, end at 64k (epochs
            82, 123 and 164 of 390 steps), a linear warm-up over the first epoch standing in
            for their 400 iterations at 0.01 (ResNet-110); seeds 0-4: 50 runs. About 1.5 h
            per run on one GPU (estimated, not measured), so 3 days for the sweep on one GPU.
            CIFAR-10 must be prepared in data.data_dir (tfds build cifar10).
    cpu     the embedded digits, ResNet-20 and ResNet-56 at width 8, batch 32, 2 epochs (248
            steps; at batch 128, 62 steps left every unit far from trained), seeds 0-2: 30
            runs; 17 min 18 s on a 2-core CPU (measured, another job beside it at first).
"""

from bn_study.analysis import report_spec
from bn_study.nn import catalog as nn_catalog
from bn_study.studies import declare
from configs import default
from configs.paper import common


def get_config(arg: str | None = None):
    variant = common.variant(arg, __file__)
    config = default.get_config()
    config.model.name = 'resnet'
    config.model.bn_position = 'original'
    if variant == common.FULL:
        config.data.name = 'cifar10'  # augment 'standard' is pad_crop_flip there
        config.model.resnet.width = 16
        config.num_epochs = 164
        config.optimizer.update(learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
        config.schedule.update(name='step', warmup_epochs=1.0,
                               step_boundaries_epochs=(82, 123))
        config.eval.batch_size = 1000
    else:
        config.model.resnet.width = 8
        config.batch_size = 32
        config.num_epochs = 2
    return config


def get_sweep(arg: str | None = None) -> list[dict]:
    if common.variant(arg, __file__) == common.FULL:
        depths = declare.zipped({'model.resnet.depth': (110, 164),
                               'model.resnet.block': ('basic', 'bottleneck')})
        seeds = range(5)
    else:
        depths = [{'model.resnet.depth': 20}, {'model.resnet.depth': 56}]
        seeds = range(3)
    units = [u for u in nn_catalog.RESIDUAL_UNITS if u != 'none']
    return declare.product(depths, {'model.bn_position': units}, {'seed': seeds})


def get_report(arg: str | None = None) -> report_spec.ReportSpec:
    del arg
    table = 'He et al. 2016, Table 2 (CIFAR-10 error %, ResNet-110)'
    unit = lambda name: {'model.bn_position': name}
    return report_spec.ReportSpec('model.bn_position', (
        report_spec.Claim(table, '6.61 vs 8.17', unit('original'), unit('bn_after_addition')),
        report_spec.Claim(table, '6.61 vs 7.84', unit('original'),
                        unit('relu_before_addition')),
        report_spec.Claim(table, '6.37 vs 6.61', unit('full_preactivation'), unit('original'),
                        'no_worse'),
        report_spec.Claim(table, '6.37 vs 8.17', unit('full_preactivation'),
                        unit('bn_after_addition')),
        report_spec.Claim(table, '6.71 vs 6.61', unit('relu_only_preactivation'),
                        unit('original'), 'no_worse'),
    ))
