"""Wu & Johnson 2021, Rethinking "Batch" in BatchNorm: which statistics should evaluation use?
The running averages (EMA, at two momenta), PreciseBN (population statistics recomputed
with the weights frozen, over two sample sizes), or each test batch's own, across
normalization batch sizes, evaluated after every epoch.

Published claims (no single table): PreciseBN, over 10^3-10^4 samples, is more accurate
and more stable across checkpoints than the EMA, whose estimate has very high variance at
large batch sizes; the best error comes with a normalization batch of 32-128; small
normalization batches hurt mainly through the train/test inconsistency.

Every run trains once and is evaluated three ways (eval.stats); the EMA momentum and the
PreciseBN sample size change only the evaluation, so runs differing in them alone train
bitwise identically (twice the compute, one training trajectory: the comparison is exact).
Commands:
    python scripts/sweep.py --config=configs/paper/wujohnson2021_precisebn.py:cpu \
        --sweep_dir=studies/wujohnson2021_precisebn_cpu \
        --report_dir=results/paper/wujohnson2021_precisebn_cpu
    python scripts/sweep.py --config=configs/paper/wujohnson2021_precisebn.py --sweep_dir=...
Variants:
    (none)  full, on the families this codebase has (no ImageNet ResNet-50 here): CIFAR-10,
            ResNet-56 width 16, batch 1024 in ghost batches of 8, 32, 128 or 1024, EMA
            momentum 0.9 and 0.99 (PyTorch's 0.1 and 0.01), PreciseBN over 1,024 and 10,240
            training images, 100 epochs, seeds 0-2: 48 runs. About 8 GPU-hours (estimated).
    cpu     the seed CNN on the embedded digits, batch 128 in ghost batches of 4, 16 or 64
            (64: each device's whole slice), the same momenta and sample sizes, 5 epochs,
            seeds 0-2: 36 runs; 7 min 31 s on a 2-core CPU (measured).
"""

from bn_study.analysis import report_spec
from bn_study.studies import declare
from configs import default
from configs.paper import common


def get_config(arg: str | None = None):
    variant = common.variant(arg, __file__)
    config = default.get_config()
    config.norm.stats_scope = 'ghost'
    config.eval.stats = ('ema', 'precise', 'batch')
    if variant == common.FULL:
        config.data.name = 'cifar10'
        config.model.name = 'resnet'
        config.model.bn_position = 'original'
        config.model.resnet.update(depth=56, width=16)
        config.batch_size = 1024
        config.eval.batch_size = 1000
        config.num_epochs = 100
        config.optimizer.update(learning_rate=0.4, weight_decay=1e-4)
        config.schedule.warmup_epochs = 5.0
    else:
        config.num_epochs = 5
    return config


def get_sweep(arg: str | None = None) -> list[dict]:
    if common.variant(arg, __file__) == common.FULL:
        ghosts = (8, 32, 128, 1024)
    else:
        ghosts = (4, 16, 64)
    return declare.product({'norm.ghost_batch_size': ghosts, 'norm.momentum': (0.9, 0.99),
                          'eval.precise_bn_examples': (1024, 10240), 'seed': range(3)})


def get_report(arg: str | None = None) -> report_spec.ReportSpec:
    source = 'Wu & Johnson 2021 (claims, Sec. 3-4)'
    smallest = 8 if common.variant(arg, __file__) == common.FULL else 4
    at_smallest = lambda kind: {'eval': kind, 'norm.ghost_batch_size': smallest}
    return report_spec.ReportSpec('norm.ghost_batch_size', (
        report_spec.Claim(source, 'PreciseBN more accurate than the EMA', {'eval': 'precise'},
                        {'eval': 'ema'}, 'no_worse'),
        # Small normalization batches hurt through the train/test inconsistency, which
        # normalizing each test batch as training did removes.
        report_spec.Claim(source, 'train/test inconsistency at small batches',
                        at_smallest('batch'), at_smallest('precise')),
    ))
