"""The networks' closed sets: families and their placements, residual units, norm kinds,
BatchNorm statistics scopes, activations and compute dtypes."""

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

# What a norm layer normalizes over; orthogonal to where it goes.
NORM_KINDS = (
    'batch',     # each channel over the batch (and spatial positions): BatchNorm
    'layer',     # each example over all its channels and positions: LayerNorm (GN, 1 group)
    'group',     # each example over groups of channels and positions: GroupNorm (Wu & He)
    'instance',  # each example and channel over positions: InstanceNorm (GN, 1 channel/group)
    'none',      # identity: the positions stay, nothing is normalized
)

# Which examples BatchNorm statistics are computed over during training.
STATS_SCOPES = (
    'global',      # the whole global batch, across devices (pmean of E[x] and E[x^2])
    'per_device',  # each device's slice alone: changes with the device count
    'ghost',       # ghost batches of norm.ghost_batch_size inside each device's slice
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

DTYPES = ('float32', 'bfloat16', 'float16')
