"""Checks of a network's settings against the catalog, shared by the families (from their
__post_init__) and by the config schema; light, like the catalog."""

import dataclasses

from bn_study.errors import ConfigError, check_choice
from bn_study.nn import placement
from bn_study.nn.catalog import MODELS, RESNET_BLOCKS


def check_position(model: str, settings: dict, bn_position: str, bn_on_output: bool) -> None:
    """Raises ConfigError unless `bn_position` is valid for the family: a plain family's
    uniform position, preset or per-layer list (placement.py), a residual unit otherwise."""
    if placement.is_plain(model):
        placement.positions(model, settings, bn_position, bn_on_output)
        return
    valid = MODELS[model].positions
    if bn_position not in valid:
        raise ConfigError(f'config.model.bn_position={bn_position!r} is not valid for model '
                          f'{model}; choose one of: {", ".join(valid)}')


def check_family(model: str, module) -> None:
    """Raises ConfigError unless the family's module has valid values of the family's
    closed-set settings (its catalog entry's `choices`) and a valid `bn_position`; each
    family calls it from __post_init__."""
    for setting, valid in MODELS[model].choices.items():
        check_choice(f'model.{model}.{setting}', getattr(module, setting), valid)
    check_position(model, module_settings(module), module.bn_position, module.bn_on_output)


def module_settings(module) -> dict:
    """A family module's fields, which name its config section's settings."""
    return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
            if f.name not in ('parent', 'name')}


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
