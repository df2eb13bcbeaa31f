"""Optimizers, learning-rate schedules and the weight-decay mask, all from the config.

The names live in training.catalog (OPTIMIZERS, SCHEDULES, WEIGHT_DECAY_ON), each naming its
function here.
"""

import jax
import ml_collections
import optax
from flax import traverse_util

from bn_study.training import catalog

# Schedules after the warm-up: (schedule config, base rate, warm-up steps, steps after it,
# steps per epoch) -> optax schedule counting from the end of the warm-up.

def constant(schedule_config, learning_rate, warmup, rest, steps_per_epoch):
    return optax.constant_schedule(learning_rate)


def cosine(schedule_config, learning_rate, warmup, rest, steps_per_epoch):
    return optax.cosine_decay_schedule(learning_rate, decay_steps=max(rest, 1))


def step(schedule_config, learning_rate, warmup, rest, steps_per_epoch):
    # Boundaries are in epochs from the start of training; the joined schedule counts
    # from the end of warm-up, hence the shift.
    boundaries = {int(round(e * steps_per_epoch)) - warmup: schedule_config.step_decay_factor
                  for e in schedule_config.step_boundaries_epochs}
    return optax.piecewise_constant_schedule(learning_rate, boundaries)


def make_schedule(schedule_config: ml_collections.ConfigDict, learning_rate: float,
                  steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Linear warm-up from zero, then constant, cosine to zero, or step decay."""
    after_warmup = catalog.implementation(catalog.SCHEDULES, 'schedule.name',
                                          schedule_config.name)
    warmup = min(int(round(schedule_config.warmup_epochs * steps_per_epoch)), total_steps)
    after = after_warmup(schedule_config, learning_rate, warmup, total_steps - warmup,
                         steps_per_epoch)
    if warmup == 0:
        return after
    ramp = optax.linear_schedule(0.0, learning_rate, transition_steps=warmup)
    return optax.join_schedules([ramp, after], boundaries=[warmup])


# Weight-decay targets: (parameter path, the paths of modules holding a kernel) -> decays?
# A module holding a 'kernel' is a conv or dense layer and its 'bias' is a layer bias;
# a module without one is a norm layer ('scale' and/or 'bias').

def decay_all(path, layer_modules) -> bool:
    return True


def decay_all_but_norm(path, layer_modules) -> bool:
    return path[:-1] in layer_modules


def decay_kernels_only(path, layer_modules) -> bool:
    return path[-1] == 'kernel'


def weight_decay_mask(params, weight_decay_on: str):
    """True where weight decay applies: by leaf role, so any model's norm params are found."""
    decays = catalog.implementation(catalog.WEIGHT_DECAY_ON, 'optimizer.weight_decay_on',
                                    weight_decay_on)
    flat = traverse_util.flatten_dict(params)
    layer_modules = {path[:-1] for path in flat if path[-1] == 'kernel'}
    return traverse_util.unflatten_dict({path: decays(path, layer_modules) for path in flat})


# Optimizers: (optimizer config, schedule, weight-decay mask) -> optax transformation.
# Coupled L2 (sgd, adam): the decay term joins the gradient before momentum / Adam scaling,
# as PyTorch's weight_decay and Caffe's solver do.

def sgd(opt_config, schedule, mask):
    return optax.chain(optax.add_decayed_weights(opt_config.weight_decay, mask),
                       optax.sgd(schedule, momentum=opt_config.momentum or None,
                                 nesterov=opt_config.nesterov))


def adam(opt_config, schedule, mask):
    return optax.chain(optax.add_decayed_weights(opt_config.weight_decay, mask),
                       optax.adam(schedule, b1=opt_config.b1, b2=opt_config.b2,
                                  eps=opt_config.eps))


def adamw(opt_config, schedule, mask):
    return optax.adamw(schedule, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps,
                       weight_decay=opt_config.weight_decay, mask=mask)


def logits_layer(params) -> str:
    """The top-level module of the logits layer: the last one built with a kernel (every
    family builds its logits layer last; a norm on the logits comes after it but has none)."""
    return [name for name, leaves in params.items() if 'kernel' in leaves][-1]


def clipping_mask(params):
    """True where adaptive gradient clipping applies: everywhere but the logits layer."""
    out = logits_layer(params)
    return {name: jax.tree.map(lambda _: name != out, leaves) for name, leaves in params.items()}


def clipping_record(opt_config: ml_collections.ConfigDict) -> dict | None:
    """The gradient clipping a run used, for its summary; None without."""
    if not opt_config.agc_clipping:
        return None
    return {'rule': 'adaptive, unit-wise (Brock et al. 2021): each unit\'s gradient at most '
                    'clipping * max(its weight norm, eps)',
            'unit': 'per output unit of a kernel; a bias or scale vector as one unit',
            'clipping': opt_config.agc_clipping, 'eps': opt_config.agc_eps,
            'not_clipped': 'the logits layer', 'applied': 'before weight decay and momentum'}


def make_optimizer(opt_config: ml_collections.ConfigDict, shape: optax.Schedule,
                   params) -> optax.GradientTransformation:
    """SGD or Adam with coupled L2 decay, or AdamW with decoupled decay, masked as configured;
    with optimizer.agc_clipping > 0, adaptive gradient clipping first (optax's
    adaptive_grad_clip) on every layer but the logits.

    The rate at step t is opt_config.learning_rate * shape(t): `shape` is the schedule at a
    peak of 1 (make_schedule(..., 1.0, ...)). The peak rate is a hyperparameter held in the
    optimizer state (optax.inject_hyperparams), not a constant of the compiled step, so runs
    that differ only in their rate (a study's tuning grid) share one compiled program.
    """
    build = catalog.implementation(catalog.OPTIMIZERS, 'optimizer.name', opt_config.name)
    mask = weight_decay_mask(params, opt_config.weight_decay_on)

    def at_peak(peak_learning_rate):
        tx = build(opt_config, lambda count: peak_learning_rate * shape(count), mask)
        if not opt_config.agc_clipping:
            return tx
        clip = optax.adaptive_grad_clip(opt_config.agc_clipping, eps=opt_config.agc_eps)
        return optax.chain(optax.masked(clip, clipping_mask(params)), tx)
    return optax.inject_hyperparams(at_peak)(peak_learning_rate=opt_config.learning_rate)
