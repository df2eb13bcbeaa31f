"""Checks of a network's settings against the catalog, shared by the families (from their
__post_init__) and by the config schema; light, like the catalog."""

from bn_study.errors import ConfigError, check_choice
from bn_study.nn.catalog import MODELS, RESNET_BLOCKS


def check_position(model: str, bn_position: str) -> None:
    """Raises ConfigError unless `bn_position` is one of the family's positions."""
    valid = MODELS[model].positions
    if bn_position not in valid:
        raise ConfigError(f'config.model.bn_position={bn_position!r} is not valid for model '
                          f'{model}; choose one of: {", ".join(valid)}')


def check_family(model: str, module) -> None:
    """Raises ConfigError unless the family's module has a valid `bn_position` and valid
    values of the family's closed-set settings (its catalog entry's `choices`); each family
    calls it from __post_init__."""
    check_position(model, module.bn_position)
    for setting, valid in MODELS[model].choices.items():
        check_choice(f'model.{model}.{setting}', getattr(module, setting), valid)


def resnet_units_per_stage(depth: int, block: str) -> int:
    """n in depth = 6n+2 (basic) or 9n+2 (bottleneck): 3 stages of n units of the block's
    convs, plus the stem and the logits layer; raises ConfigError for other depths."""
    layers_per_unit = len(RESNET_BLOCKS[block].kernels)
    n, remainder = divmod(depth - 2, 3 * layers_per_unit)
    if remainder or n < 1:
        examples = ', '.join(str(3 * layers_per_unit * k + 2) for k in (1, 3, 9, 18))
        raise ConfigError(
            f'config.model.resnet.depth={depth} is not {3 * layers_per_unit}n+2 as {block} '
            f'blocks need; choose e.g. {examples}')
    return n


def family_settings(model_config) -> dict:
    """config.model.<name>: the configured family's settings, which every family has in the
    config (configs/default.py), so no setting falls back to a module default unseen."""
    name = model_config.name
    check_choice('model.name', name, MODELS)
    if name not in model_config:
        raise ConfigError(f'config.model.{name} is missing; every setting of the {name} family '
                          f'belongs there (configs/default.py)')
    return {k: tuple(v) if isinstance(v, list) else v for k, v in model_config[name].items()}
