"""Model registry: config.model.name -> Linen module, built with its norm factory."""

import jax.numpy as jnp
import ml_collections

from bn_study.nn import norms
from bn_study.nn import catalog as nn_catalog
from bn_study import schema
from bn_study.nn.mlp import MLP
from bn_study.nn.resnet import ResNet
from bn_study.nn.simple_cnn import SimpleCNN
from bn_study.nn.vgg import VGG

MODELS = {'simple_cnn': SimpleCNN, 'vgg': VGG, 'resnet': ResNet, 'mlp': MLP}
assert tuple(MODELS) == nn_catalog.MODELS, 'keep nn_catalog.MODELS and the registry in step'


def build_model(model_config: ml_collections.ConfigDict,
                norm_config: ml_collections.ConfigDict, num_classes: int):
    """Builds the configured model; its family's settings are config.model.<name>."""
    schema.check_choice('model.name', model_config.name, nn_catalog.MODELS)
    dtype = jnp.dtype(model_config.dtype)
    family = {k: tuple(v) if isinstance(v, list) else v
              for k, v in model_config[model_config.name].items()}
    return MODELS[model_config.name](
        norm=norms.make_norm(norm_config, dtype), bn_position=model_config.bn_position,
        bn_on_output=model_config.bn_on_output, num_classes=num_classes, dtype=dtype,
        **family)


def has_norm_layers(model_config: ml_collections.ConfigDict) -> bool:
    """Whether the configured placement puts any norm layer in the network."""
    return model_config.bn_position != 'none' or model_config.bn_on_output
