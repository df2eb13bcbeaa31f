"""Ioffe & Szegedy 2015, Batch Normalization, section 4.1: MNIST with 3 fully connected hidden
layers of 100 sigmoid units, initialized to small Gaussian values, batch 60, 50k steps;
without BN, with BN before the sigmoid (the paper's placement) and after it; and the
learning rate at 1x, 5x and 30x, as their Inception experiments scaled it (BN-x5, BN-x30).

Published: a figure, no numbers: with BN the test accuracy is higher throughout training,
and the input of a typical sigmoid in the last hidden layer keeps a stable distribution
(its 15th, 50th and 85th percentiles), where without BN it drifts. On Inception, BN trained
at 5x and 30x the rate (73.0% and 74.8% top-1) while plain Inception at 5x diverged. The
paper gives no learning rate or momentum for MNIST: here SGD with momentum 0.9 at a
constant 0.02 (x1), 0.1 (x5) and 0.6 (x30), no weight decay, kernels ~ N(0, 0.01^2).

Commands:
    python scripts/sweep.py --config=configs/paper/ioffe2015_mnist.py:cpu \
        --sweep_dir=studies/ioffe2015_mnist_cpu --report_dir=results/paper/ioffe2015_mnist_cpu
    python scripts/sweep.py --config=configs/paper/ioffe2015_mnist.py --sweep_dir=...
Both read the official MNIST, prepared offline from data.manual_dir (../shared/datasets/mnist
where it exists; otherwise TFDS downloads it).
Variants:
    (none)  full: 50 epochs of 1,000 steps (the paper's 50k steps), seeds 0-4: 45 runs.
            About 2 h on one GPU (estimated: the step is dispatch-bound, ~1 ms).
    cpu     10 epochs (10k steps), seeds 0-2: 27 runs; 13 min 47 s on a 2-core CPU
            (measured).
"""

from bn_study.analysis import report_spec
from bn_study.studies import declare
from configs import default
from configs.paper import common

BASE_LR = 0.02
MULTIPLIERS = (1, 5, 30)


def get_config(arg: str | None = None):
    variant = common.variant(arg, __file__)
    config = default.get_config()
    config.data.name = 'mnist'
    config.data.manual_dir = common.MNIST_MANUAL_DIR
    config.model.name = 'mlp'
    config.model.mlp.update(hidden_features=(100, 100, 100), activation='sigmoid',
                            init_stddev=0.01)
    config.batch_size = 60
    config.optimizer.update(learning_rate=BASE_LR, momentum=0.9, weight_decay=0.0)
    config.schedule.update(name='constant', warmup_epochs=0.0)
    config.diagnostics.every_steps = 250
    config.diagnostics.percentiles = (15, 50, 85)
    config.num_epochs = 50 if variant == common.FULL else 10
    return config


def get_sweep(arg: str | None = None) -> list[dict]:
    seeds = range(5) if common.variant(arg, __file__) == common.FULL else range(3)
    return declare.product({'model.bn_position': ('none', 'before_act', 'after_act'),
                          'optimizer.learning_rate': tuple(BASE_LR * m for m in MULTIPLIERS),
                          'seed': seeds})


def get_report(arg: str | None = None) -> report_spec.ReportSpec:
    del arg
    figure = 'Ioffe & Szegedy 2015, Figure 1(a) (MNIST)'
    inception = 'Ioffe & Szegedy 2015, Inception on ImageNet'
    at = lambda position, multiplier: {'model.bn_position': position,
                                      'optimizer.learning_rate': BASE_LR * multiplier}
    return report_spec.ReportSpec('model.bn_position', (
        report_spec.Claim(figure, 'BN above no BN throughout training (figure only)',
                        at('before_act', 1), at('none', 1)),
        report_spec.Claim(inception, 'BN-x5 73.0% vs Inception-x5 diverged', at('before_act', 5),
                        at('none', 5)),
        report_spec.Claim(inception, 'BN-x30 74.8% vs Inception-x5 diverged',
                        at('before_act', 30), at('none', 30)),
    ))
