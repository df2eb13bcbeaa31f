"""Builds the configured model: config.model.name's family (catalog.MODELS) with its norm
factory."""

import jax.numpy as jnp
import ml_collections

from bn_study.nn import catalog, checks, norms


def build_model(model_config: ml_collections.ConfigDict,
                norm_config: ml_collections.ConfigDict, num_classes: int):
    """Builds the configured model; its family's settings are config.model.<name>."""
    family = checks.family_settings(model_config)
    dtype = jnp.dtype(model_config.dtype)
    module = catalog.resolve(catalog.MODELS[model_config.name].module)
    return module(
        norm=norms.make_norm(norm_config, dtype), bn_position=model_config.bn_position,
        bn_on_output=model_config.bn_on_output, num_classes=num_classes, dtype=dtype,
        **family)
