"""Signal diagnostics: what each norm layer does to the activations passing through it, and
how the input of each activation is distributed.

Per norm layer, on a training batch in train mode: the mean and variance over all elements of
its input and its output, and the mean over channels of each channel's variance (the spread a
per-channel norm removes, without the spread between channel means); for BatchNorm, the L2
norms of its running mean and variance. With config.diagnostics.percentiles, per activation
of the plain blocks: those percentiles, over the whole batch (and positions), of the input
of its first unit or channel: Ioffe & Szegedy's "input to a typical sigmoid" (Figure 1).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from bn_study.nn.blocks import ACTIVATION_INPUTS
from bn_study.nn.norms import BATCH_AXIS


def _first(sown) -> jax.Array:
    return sown[0]


def signal_step(state, batch: dict, percentiles: tuple = ()) -> dict:
    """Moments of every norm layer's input and output on one batch, pooled over devices, and
    the percentiles of each activation's first input unit over the whole global batch."""
    collections = ['batch_stats', 'diagnostics'] + ([ACTIVATION_INPUTS] if percentiles else [])
    _, mutated = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                                batch['image'], train=True, mutable=collections)
    is_sown = lambda x: isinstance(x, tuple)
    # Devices hold equal slices, so averaging E[x] and E[x^2] gives the whole batch's.
    moments = jax.lax.pmean(jax.tree.map(_first, mutated.get('diagnostics', {}),
                                         is_leaf=is_sown), BATCH_AXIS)
    inputs = jax.tree.map(_first, mutated.get(ACTIVATION_INPUTS, {}), is_leaf=is_sown)
    quantiles = jax.tree.map(
        lambda x: jnp.percentile(jax.lax.all_gather(x, BATCH_AXIS).reshape(-1),
                                 jnp.asarray(percentiles, jnp.float32)), inputs)
    return {'norms': moments, 'activations': quantiles}


def make_signal_step(percentiles: tuple):
    """signal_step with config.diagnostics.percentiles bound, for pmap."""
    return functools.partial(signal_step, percentiles=tuple(percentiles))


def rows(step: int, signals: dict, batch_stats: dict, percentiles: tuple = ()) -> list[dict]:
    """One row per norm layer ('/'-joined path), then one per activation with percentiles
    ('p15', 'p50', ...), from one replica of signal_step's result and the batch statistics
    (host)."""
    return (_norm_rows(step, signals['norms'], batch_stats) +
            _activation_rows(step, signals['activations'], percentiles))


def _activation_rows(step: int, quantiles: dict, percentiles: tuple) -> list[dict]:
    layers = traverse_util.flatten_dict(quantiles, sep='/')
    return [{'step': step, 'layer': name,
             **{f'p{q:g}': float(v) for q, v in zip(percentiles, np.asarray(values))}}
            for name, values in sorted(layers.items())]


def _norm_rows(step: int, moments: dict, batch_stats: dict) -> list[dict]:
    layers = traverse_util.flatten_dict(moments, sep='/')
    running = traverse_util.flatten_dict(batch_stats, sep='/')
    names = sorted({key.rsplit('/', 1)[0] for key in layers})
    table = []
    for name in names:
        get = lambda stat: np.asarray(layers[f'{name}/{stat}'], np.float64)
        row = {'step': step, 'layer': name}
        for side in ('input', 'output'):
            # Every channel holds as many elements, so channel averages give tensor moments.
            mean, mean_sq = get(f'{side}_mean'), get(f'{side}_mean_sq')
            row[f'{side}_mean'] = float(mean.mean())
            row[f'{side}_var'] = max(float(mean_sq.mean() - mean.mean() ** 2), 0.0)
            row[f'{side}_channel_var'] = float(np.maximum(mean_sq - mean ** 2, 0.0).mean())
        if f'{name}/mean' in running:
            row['running_mean_norm'] = float(np.linalg.norm(running[f'{name}/mean']))
            row['running_var_norm'] = float(np.linalg.norm(running[f'{name}/var']))
        table.append(row)
    return table
