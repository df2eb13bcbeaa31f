"""The networks' closed sets, each declared once, here: families and their placements,
residual units, norm kinds with their properties, BatchNorm statistics scopes, activations,
compute dtypes, ResNet blocks and shortcuts, VGG depths.

Validation (bn_study/schema.py), error messages, the modules and the run records all read
these tables. An entry names its implementation as 'package.module:attr', imported only when
`resolve` is called, so this module stays light: no JAX, no Flax (study configs import it).
"""

import dataclasses
import importlib


def resolve(target: str):
    """The object a table entry names as 'package.module:attr', importing its module."""
    module, _, attr = target.partition(':')
    return getattr(importlib.import_module(module), attr)


# ---- Placements ------------------------------------------------------------------------

# Where the norm goes in each block of a plain (non-residual) network, and the order of a
# block's ops: 'layer' (its conv or dense layer), 'norm', 'act', 'pool'.
PLAIN_POSITIONS = {
    'none': ('layer', 'act', 'pool'),                  # no norm layers, layers keep their bias
    'before_act': ('layer', 'norm', 'act', 'pool'),    # Ioffe & Szegedy 2015, 3.2
    'after_act': ('layer', 'act', 'norm', 'pool'),     # the well-known answer's recommendation
    'after_pool': ('layer', 'act', 'pool', 'norm'),
    # airbench's order (conv, pool, BN, GELU): statistics over the pooled positions, a
    # quarter as many as before_act's. ReLU and max-pool commute, so only the norm moved.
    'after_pool_before_act': ('layer', 'pool', 'norm', 'act'),
}
# The BN paper's MLP has no pooling, so `after_pool` would repeat `after_act`.
MLP_POSITIONS = ('none', 'before_act', 'after_act')
# The four answers the seed question weighs (before the activation, after it, after the pool,
# not at all): the uniform placements its paper config sweeps (seed_question_lr).
BN_POSITIONS = ('none', 'before_act', 'after_act', 'after_pool')
# A layer without a pool cannot take a position that names one; where a uniform position or a
# preset says one anyway, that layer takes the position the pool's absence leaves.
WITHOUT_POOL = {'after_pool': 'after_act', 'after_pool_before_act': 'before_act'}
# The output (logits) layer: no activation or pool of its own (the softmax is in the loss).
OUTPUT_POSITIONS = {
    'none': ('layer',),
    'after_layer': ('layer', 'norm'),  # what config.model.bn_on_output=True adds
}
_UNPOOLED = tuple(p for p in PLAIN_POSITIONS if p not in WITHOUT_POOL)
# The kinds of layer a plain network has, each with the positions it can take.
LAYER_KINDS = {
    'conv_pooled': tuple(PLAIN_POSITIONS),  # a conv whose block ends in a 2x2 max-pool
    'conv': _UNPOOLED,  # a conv without a pool (VGG's inner convs)
    'dense': _UNPOOLED,  # a hidden dense layer
    'output': tuple(OUTPUT_POSITIONS),  # the logits layer
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A published placement recipe, as one position per kind of layer (LAYER_KINDS)."""
    source: str  # where the recipe comes from (REFERENCES.md has the sources)
    positions: dict  # layer kind -> position


# Published recipes, by name; `config.model.bn_position` takes the name and the run records
# the positions it expanded into, layer by layer (placement.py).
PRESETS = {
    # Stack Overflow, "Where to apply batch normalization on standard CNNs" (2017), the
    # accepted answer, for Conv1-ReLU1-Pool1-Conv2-ReLU2-Pool2-FC1-FC2: "BN after Relu1,
    # Relu2, FC1 and FC2". The question's network has no nonlinearity after FC1, this
    # codebase's has a ReLU there (else FC1-FC2 would be one linear map): "after FC1" is
    # taken as written, right after the dense layer, which is before that ReLU. FC2 is
    # the logits layer, normalized after it.
    'so_answer': Preset('Stack Overflow accepted answer (2017): BN after ReLU1, ReLU2, FC1, '
                        'FC2', {'conv_pooled': 'after_act', 'conv': 'after_act',
                                'dense': 'before_act', 'output': 'after_layer'}),
    # Ioffe & Szegedy 2015, 3.2: "immediately before the nonlinearity", in every hidden
    # layer (4.1: "to each hidden layer"); the logits layer is not normalized.
    'bn_paper': Preset('Ioffe & Szegedy 2015, 3.2 and 4.1: BN before every nonlinearity',
                       {'conv_pooled': 'before_act', 'conv': 'before_act',
                        'dense': 'before_act', 'output': 'none'}),
    # Keller Jordan's airbench (github KellerJordan/cifar10-airbench, airbench94.py): each
    # block is conv, 2x2 max-pool, BN, GELU, then conv, BN, GELU; its head is a bare
    # linear layer. Its hidden dense layers (it has none) are taken as its convs: BN
    # before the activation.
    'airbench': Preset('airbench94 (K. Jordan): conv, max-pool, BN, activation',
                       {'conv_pooled': 'after_pool_before_act', 'conv': 'before_act',
                        'dense': 'before_act', 'output': 'none'}),
    # No norm anywhere: the uniform position 'none', which the name resolves to first (so
    # model.bn_on_output=True still adds the norm on the logits, as with any uniform one).
    'none': Preset('no normalization', {kind: 'none' for kind in LAYER_KINDS}),
}


@dataclasses.dataclass(frozen=True)
class ResidualUnit:
    """Where a residual unit's norms and ReLUs go, as runs of 'conv', 'norm', 'act', 'add'."""
    middle: tuple  # the ops around every conv of the branch but the last
    last: tuple    # the ops around the branch's last conv
    after: tuple   # the ops from the addition on
    # The network's first conv is followed by what the unit needs its input to be: units
    # that normalize after their convs get a normalized, activated input; full
    # pre-activation units normalize their own input, so their stem is the bare conv.
    stem: tuple = ('conv', 'norm', 'act')
    # Pre-activation units end on an addition; the head applies the pre-activation a next
    # unit would (He et al. 2016: "an extra activation right after its element-wise addition").
    head: tuple = ()
    # Post-activation units normalize the projection shortcut too, as in He et al.'s code
    # (shortcut type B: conv then BN); pre-activation units project the pre-activated input.
    normalized_projection: bool = False

    @property
    def ends_on_norm(self) -> bool:
        """Whether the branch ends on a norm: the units norm.zero_init_last_scale applies to.
        (Where a ReLU or conv follows the last norm, a zero scale there would stop every
        gradient into the branch: ReLU'(0) = 0.)"""
        return self.last[-1] == 'norm'


# The residual units of He et al. 2016 (Identity Mappings, Fig. 4 (a)-(e)), and the same unit
# with no norm at all; `bn_position` names the unit.
RESIDUAL_UNITS = {
    'original': ResidualUnit(  # conv-BN-ReLU-conv-BN, add, ReLU (post-activation, He 2015)
        ('conv', 'norm', 'act'), ('conv', 'norm'), ('add', 'act'),
        normalized_projection=True),
    'bn_after_addition': ResidualUnit(  # conv-BN-ReLU-conv, add, BN, ReLU
        ('conv', 'norm', 'act'), ('conv',), ('add', 'norm', 'act'),
        normalized_projection=True),
    'relu_before_addition': ResidualUnit(  # conv-BN-ReLU-conv-BN-ReLU, add
        ('conv', 'norm', 'act'), ('conv', 'norm', 'act'), ('add',),
        normalized_projection=True),
    'relu_only_preactivation': ResidualUnit(  # ReLU-conv-BN-ReLU-conv-BN, add
        ('act', 'conv', 'norm'), ('act', 'conv', 'norm'), ('add',), head=('act',)),
    'full_preactivation': ResidualUnit(  # BN-ReLU-conv-BN-ReLU-conv, add
        ('norm', 'act', 'conv'), ('norm', 'act', 'conv'), ('add',),
        stem=('conv',), head=('norm', 'act')),
    'none': ResidualUnit(  # conv-ReLU-conv, add, ReLU: no norm layers
        ('conv', 'act'), ('conv',), ('add', 'act'), stem=('conv', 'act')),
}


# ---- Model families --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Family:
    """A model family: its Linen module, its valid `bn_position` values, and the closed sets
    of its own settings (config.model.<name>.<setting>)."""
    module: str  # 'package.module:Class'
    positions: object  # the valid uniform bn_position values (a tuple or a table keyed by them)
    choices: dict = dataclasses.field(default_factory=dict)  # setting -> its closed set
    # 'package.module:function' mapping the family's settings to its layers, as (name, kind
    # in LAYER_KINDS) in call order: a plain family, which takes presets and per-layer
    # placements (placement.py); None: bn_position takes `positions` only.
    layers: str | None = None


@dataclasses.dataclass(frozen=True)
class ResNetBlock:
    """The convs of one residual unit's branch."""
    kernels: tuple  # each conv's kernel size, in order; the first 3x3 one carries the stride
    expansion: int  # the unit's output width over its inner width


RESNET_BLOCKS = {
    'basic': ResNetBlock((3, 3), 1),          # two 3x3 convs; depth 6n+2 (20, 32, 44, 56, 110)
    'bottleneck': ResNetBlock((1, 3, 1), 4),  # 1x1, 3x3, 1x1, 4x wider output; depth 9n+2 (164)
}
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
ACTIVATIONS = {  # the MLP's nonlinearity; the CNNs use ReLU
    'sigmoid': 'flax.linen:sigmoid',
    'relu': 'flax.linen:relu',
}

# config.model.name -> its family.
MODELS = {
    # Conv1-ReLU1-Pool1-Conv2-ReLU2-Pool2-FC1-FC2, the seed question's network
    'simple_cnn': Family('bn_study.nn.simple_cnn:SimpleCNN', PLAIN_POSITIONS,
                         layers='bn_study.nn.placement:simple_cnn_layers'),
    # VGG-11/13/16/19-shaped plain CNN, a pool after each stage
    'vgg': Family('bn_study.nn.vgg:VGG', PLAIN_POSITIONS, {'depth': VGG_DEPTHS},
                  layers='bn_study.nn.placement:vgg_layers'),
    # CIFAR ResNet, 6n+2 basic or 9n+2 bottleneck layers
    'resnet': Family('bn_study.nn.resnet:ResNet', RESIDUAL_UNITS,
                     {'block': RESNET_BLOCKS, 'shortcut': RESNET_SHORTCUTS}),
    # the BN paper's MNIST MLP (3 x 100 sigmoid units)
    'mlp': Family('bn_study.nn.mlp:MLP', MLP_POSITIONS, {'activation': ACTIVATIONS},
                  layers='bn_study.nn.placement:mlp_layers'),
}


# ---- Norm kinds ------------------------------------------------------------------------

# Which examples a norm kind's statistics pool.
STATISTICS = (
    'batch',        # examples of the batch (norm.stats_scope says which): running averages
    'per_example',  # each example's own, in training and at test time alike
    'none',         # no statistics: the norm slot is an identity without variables
)
# NormKind.groups values that are not a number.
GROUPS_FROM_CONFIG = 'config.norm.num_groups'
ONE_PER_CHANNEL = 'one per channel'


@dataclasses.dataclass(frozen=True)
class NormKind:
    """A norm kind: the layer it builds and the properties the rest of the code asks about."""
    # 'package.module:function'; function(norm: NormFactory, name: str, zero_scale: bool)
    # returns the Linen layer that norm(name)(x, train) applies.
    layer: str
    statistics: str  # one of STATISTICS
    # True if it removes each channel's mean, so a per-channel bias right before it is
    # subtracted away and the layer there goes without (Ioffe & Szegedy 3.2).
    cancels_preceding_bias: bool
    # Per-example kinds that pool groups of channels: how many groups (a number,
    # GROUPS_FROM_CONFIG or ONE_PER_CHANNEL), for the run summary; None: not grouped.
    groups: object = None

    def __post_init__(self):
        if self.statistics not in STATISTICS:
            raise ValueError(f'NormKind(statistics={self.statistics!r}) is not valid; choose '
                             f'one of: {", ".join(STATISTICS)}')


# What a norm layer normalizes over; orthogonal to where it goes.
NORM_KINDS = {
    # each channel over the batch (and spatial positions): BatchNorm
    'batch': NormKind('bn_study.nn.norms:batch_norm', 'batch', cancels_preceding_bias=True),
    # each example over all its channels and positions: LayerNorm (GN, 1 group); a
    # per-channel bias survives it
    'layer': NormKind('bn_study.nn.norms:group_norm', 'per_example',
                      cancels_preceding_bias=False, groups=1),
    # each example over groups of channels and positions: GroupNorm (Wu & He)
    'group': NormKind('bn_study.nn.norms:group_norm', 'per_example',
                      cancels_preceding_bias=False, groups=GROUPS_FROM_CONFIG),
    # each example and channel over positions: InstanceNorm (GN, 1 channel/group)
    'instance': NormKind('bn_study.nn.norms:group_norm', 'per_example',
                         cancels_preceding_bias=True, groups=ONE_PER_CHANNEL),
    # identity: the positions stay, nothing is normalized
    'none': NormKind('bn_study.nn.norms:identity', 'none', cancels_preceding_bias=False),
}

# Which examples BatchNorm statistics are computed over during training.
STATS_SCOPES = (
    'global',      # the whole global batch, across devices (pmean of E[x] and E[x^2])
    'per_device',  # each device's slice alone: changes with the device count
    'ghost',       # ghost batches of norm.ghost_batch_size inside each device's slice
)

DTYPES = ('float32', 'bfloat16', 'float16')
