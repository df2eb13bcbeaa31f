"""Signal diagnostics: what each norm layer does to the activations passing through it.

Per norm layer, on a training batch in train mode: the mean and variance over all elements of
its input and its output, and the mean over channels of each channel's variance (the spread a
per-channel norm removes, without the spread between channel means); for BatchNorm, the L2
norms of its running mean and variance.
"""

import jax
import numpy as np
from flax import traverse_util

from bn_study.norms import BATCH_AXIS


def signal_step(state, batch: dict) -> dict:
    """Moments of every norm layer's input and output on one batch, pooled over devices."""
    _, mutated = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                                batch['image'], train=True,
                                mutable=['batch_stats', 'diagnostics'])
    if 'diagnostics' not in mutated:  # a model without norm layers sows nothing
        return {}
    moments = jax.tree.map(lambda sown: sown[0], mutated['diagnostics'],
                           is_leaf=lambda x: isinstance(x, tuple))
    # Devices hold equal slices, so averaging E[x] and E[x^2] gives the whole batch's.
    return jax.lax.pmean(moments, BATCH_AXIS)


def rows(step: int, moments: dict, batch_stats: dict) -> list[dict]:
    """One row per norm layer ('/'-joined path), from one replica of both trees (host)."""
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
