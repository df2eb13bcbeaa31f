"""Where each layer of a plain network (simple_cnn, vgg, mlp) puts its norm: the one place
`config.model.bn_position` is read as one of

- a uniform position of the family (catalog.PLAIN_POSITIONS, or MLP_POSITIONS): the same
  in every hidden layer, a layer without a pool taking its pool-free form
  (catalog.WITHOUT_POOL); the output layer is normalized if `bn_on_output`;
- a preset (catalog.PRESETS): a published recipe, one position per kind of layer;
- a per-layer list, e.g. 'conv1=after_act,conv2=after_act,fc1=before_act,fc2=none': every
  layer of the family once, each with a position its kind can take (catalog.LAYER_KINDS).

All three resolve to one position per layer, which the modules build and the run record
keeps. Light, like the catalog: no JAX (the schema and study configs use it).
"""

from bn_study.errors import ConfigError
from bn_study.nn import catalog

ASSIGN, SEPARATOR = '=', ','  # 'layer=position,layer=position'


# ---- Each plain family's layers, from its settings ----------------------------------------
# (name, kind) in call order; the families build exactly these (tests/test_placement.py).
# Each takes the family's config section as keywords and reads what shapes its layers.

def simple_cnn_layers(conv_features, **_) -> tuple:
    convs = tuple((f'conv{i}', 'conv_pooled') for i in range(1, len(conv_features) + 1))
    return (*convs, ('fc1', 'dense'), ('fc2', 'output'))


def vgg_layers(depth, hidden_features, **_) -> tuple:
    convs = []
    for stage_convs in catalog.VGG_DEPTHS[depth]:
        for i in range(stage_convs):  # each stage ends in a pool
            kind = 'conv_pooled' if i == stage_convs - 1 else 'conv'
            convs.append((f'conv{len(convs) + 1}', kind))
    dense = tuple((f'fc{i}', 'dense') for i in range(1, len(hidden_features) + 1))
    return (*convs, *dense, (f'fc{len(hidden_features) + 1}', 'output'))


def mlp_layers(hidden_features, **_) -> tuple:
    dense = tuple((f'fc{i}', 'dense') for i in range(1, len(hidden_features) + 1))
    return (*dense, (f'fc{len(hidden_features) + 1}', 'output'))


def layers(model: str, settings: dict) -> tuple:
    """The plain family's layers as (name, kind); `settings` is config.model.<model>."""
    return catalog.resolve(catalog.MODELS[model].layers)(**settings)


def is_plain(model: str) -> bool:
    return catalog.MODELS[model].layers is not None


# ---- bn_position -> one position per layer --------------------------------------------------

def _fit(kind: str, position: str) -> str:
    """A uniform or preset position on a layer of `kind`: the pool-free form of a pool
    position where the layer has no pool."""
    return position if position in catalog.LAYER_KINDS[kind] else catalog.WITHOUT_POOL[position]


def _choices(model: str, layer_kinds: dict) -> str:
    uniform = ', '.join(catalog.MODELS[model].positions)
    example = SEPARATOR.join(f'{layer}{ASSIGN}{"none" if kind == "output" else "before_act"}'
                             for layer, kind in layer_kinds.items())
    return (f'choose a position for every layer ({uniform}), a preset '
            f'({", ".join(catalog.PRESETS)}), or one position per layer, e.g. {example}')


def _per_layer(model: str, layer_kinds: dict, spec: str) -> dict:
    what = f'config.model.bn_position={spec!r}'
    names = ', '.join(layer_kinds)
    given = {}
    for part in spec.split(SEPARATOR):
        layer, assign, position = (s.strip() for s in part.partition(ASSIGN))
        if not assign:
            raise ConfigError(f'{what}: {part!r} is not layer{ASSIGN}position; '
                              f'{_choices(model, layer_kinds)}')
        if layer not in layer_kinds:
            raise ConfigError(f'{what} names layer {layer!r}, which {model} does not have; its '
                              f'layers: {names}')
        if layer in given:
            raise ConfigError(f'{what} gives layer {layer} twice; give each of {names} once')
        valid = catalog.LAYER_KINDS[layer_kinds[layer]]
        if position not in valid:
            why = (' (it has no pool)' if position in catalog.WITHOUT_POOL
                   and layer_kinds[layer] != 'output' else '')
            raise ConfigError(f'{what} gives layer {layer} the position {position!r}, which it '
                              f'cannot take{why}; {layer} takes: {", ".join(valid)}')
        given[layer] = position
    missing = [layer for layer in layer_kinds if layer not in given]
    if missing:
        raise ConfigError(f'{what} leaves out {", ".join(missing)}; a per-layer placement '
                          f'gives every layer of {model} a position: {names}')
    return {layer: given[layer] for layer in layer_kinds}  # in call order


def output_position(bn_on_output: bool) -> str:
    """The logits layer's position under a uniform bn_position (any family)."""
    return 'after_layer' if bn_on_output else 'none'


def positions(model: str, settings: dict, bn_position: str, bn_on_output: bool) -> dict:
    """layer -> its position, in call order, for a plain family; raises ConfigError (one
    line naming the valid layers, positions or presets) for anything else."""
    layer_kinds = dict(layers(model, settings))
    if bn_position in catalog.MODELS[model].positions:
        return {layer: output_position(bn_on_output) if kind == 'output'
                else _fit(kind, bn_position) for layer, kind in layer_kinds.items()}
    if bn_position not in catalog.PRESETS and ASSIGN not in bn_position:
        raise ConfigError(f'config.model.bn_position={bn_position!r} is not valid for model '
                          f'{model}; {_choices(model, layer_kinds)}')
    if bn_on_output:
        raise ConfigError(f'config.model.bn_on_output=True goes with a uniform bn_position '
                          f'only; {bn_position!r} gives the output layer its own position: '
                          'set bn_on_output False')
    if bn_position in catalog.PRESETS:
        recipe = catalog.PRESETS[bn_position].positions
        return {layer: _fit(kind, recipe[kind]) for layer, kind in layer_kinds.items()}
    return _per_layer(model, layer_kinds, bn_position)


def layer_ops(model: str, settings: dict, bn_position: str, bn_on_output: bool) -> dict:
    """layer -> its ops in order ('layer', 'norm', 'act', 'pool'), for the modules."""
    kinds = dict(layers(model, settings))
    return {layer: (catalog.OUTPUT_POSITIONS[position] if kinds[layer] == 'output' else
                    tuple(op for op in catalog.PLAIN_POSITIONS[position]
                          if op != 'pool' or kinds[layer] == 'conv_pooled'))
            for layer, position in positions(model, settings, bn_position,
                                             bn_on_output).items()}


def norm_follows_layer(ops: tuple) -> bool:
    """Whether a block's norm sees its layer's output with nothing but a max-pool between:
    then a norm that removes each channel's mean cancels the layer's per-channel bias,
    which commutes with the pool (airbench's convs have no bias), and the layer goes
    without."""
    return 'norm' in ops and set(ops[1:ops.index('norm')]) <= {'pool'}


def describe(model_config) -> dict:
    """The placement a run built, for its summary record: one position per layer for the
    plain families; the residual unit and the output layer's position for the others."""
    name = model_config.name
    if is_plain(name):
        settings = dict(model_config[name])
        return positions(name, settings, model_config.bn_position, model_config.bn_on_output)
    return {'unit': model_config.bn_position,
            'output': output_position(model_config.bn_on_output)}


def has_norm_layers(model_config) -> bool:
    """Whether the configured placement puts any norm layer in the network."""
    return any(p != 'none' for p in describe(model_config).values())
