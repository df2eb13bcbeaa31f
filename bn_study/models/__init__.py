"""Model registry: config.model.name -> Linen module class."""

import jax.numpy as jnp
import ml_collections

from bn_study import choices, norms
from bn_study.models.simple_cnn import SimpleCNN

MODELS = {'simple_cnn': SimpleCNN}
assert tuple(MODELS) == choices.MODELS, 'keep choices.MODELS and the registry in step'


def build_model(model_config: ml_collections.ConfigDict,
                norm_config: ml_collections.ConfigDict, num_classes: int):
    """Builds the configured model, its norm factory made once here and passed down."""
    choices.check_choice('model.name', model_config.name, choices.MODELS)
    dtype = jnp.dtype(model_config.dtype)
    return MODELS[model_config.name](
        bn_position=model_config.bn_position,
        bn_on_output=model_config.bn_on_output,
        conv_features=tuple(model_config.conv_features),
        hidden_features=model_config.hidden_features,
        num_classes=num_classes,
        dtype=dtype,
        norm=norms.make_norm(norm_config, dtype),
    )
