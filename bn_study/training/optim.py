"""Optimizers, learning-rate schedules and the weight-decay mask, all from the config."""

import ml_collections
import optax
from flax import traverse_util

from bn_study import schema
from bn_study.training import catalog as training_catalog


def make_schedule(schedule_config: ml_collections.ConfigDict, learning_rate: float,
                  steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Linear warm-up from zero, then constant, cosine to zero, or step decay."""
    schema.check_choice('schedule.name', schedule_config.name, training_catalog.SCHEDULES)
    warmup = min(int(round(schedule_config.warmup_epochs * steps_per_epoch)), total_steps)
    rest = total_steps - warmup
    if schedule_config.name == 'constant':
        after = optax.constant_schedule(learning_rate)
    elif schedule_config.name == 'cosine':
        after = optax.cosine_decay_schedule(learning_rate, decay_steps=max(rest, 1))
    else:
        # Boundaries are in epochs from the start of training; the joined schedule counts
        # from the end of warm-up, hence the shift.
        boundaries = {int(round(e * steps_per_epoch)) - warmup: schedule_config.step_decay_factor
                      for e in schedule_config.step_boundaries_epochs}
        after = optax.piecewise_constant_schedule(learning_rate, boundaries)
    if warmup == 0:
        return after
    ramp = optax.linear_schedule(0.0, learning_rate, transition_steps=warmup)
    return optax.join_schedules([ramp, after], boundaries=[warmup])


def weight_decay_mask(params, weight_decay_on: str):
    """True where weight decay applies: by leaf role, so any model's norm params are found.

    A module holding a 'kernel' is a conv or dense layer and its 'bias' is a layer bias;
    a module without one is a norm layer ('scale' and/or 'bias').
    """
    schema.check_choice('optimizer.weight_decay_on', weight_decay_on, training_catalog.WEIGHT_DECAY_ON)
    flat = traverse_util.flatten_dict(params)
    layer_modules = {path[:-1] for path in flat if path[-1] == 'kernel'}

    def decays(path):
        if weight_decay_on == 'all':
            return True
        if weight_decay_on == 'kernels_only':
            return path[-1] == 'kernel'
        return path[:-1] in layer_modules  # all_but_norm
    return traverse_util.unflatten_dict({path: decays(path) for path in flat})


def make_optimizer(opt_config: ml_collections.ConfigDict, schedule: optax.Schedule,
                   params) -> optax.GradientTransformation:
    """SGD or Adam with coupled L2 decay, or AdamW with decoupled decay, masked as configured."""
    schema.check_choice('optimizer.name', opt_config.name, training_catalog.OPTIMIZERS)
    mask = weight_decay_mask(params, opt_config.weight_decay_on)
    if opt_config.name == 'adamw':
        return optax.adamw(schedule, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps,
                           weight_decay=opt_config.weight_decay, mask=mask)
    if opt_config.name == 'sgd':
        base = optax.sgd(schedule, momentum=opt_config.momentum or None,
                         nesterov=opt_config.nesterov)
    else:
        base = optax.adam(schedule, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps)
    # Coupled L2: the decay term joins the gradient before momentum / Adam scaling,
    # as PyTorch's weight_decay and Caffe's solver do.
    return optax.chain(optax.add_decayed_weights(opt_config.weight_decay, mask), base)
