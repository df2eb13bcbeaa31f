"""Validation and test evaluation under each kind of BN statistics: EMA, PreciseBN, each
batch's own.

All three evaluate the same parameters; they differ only in the statistics BatchNorm
normalizes the images with (config.eval.stats, catalog.EVAL_STATS, whose entries name
the *_evaluation functions here).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bn_study.nn.norms import BATCH_AXIS
from bn_study.training import catalog, data, parallel
from bn_study.training.norm_record import precise_bn_batch_count
from bn_study.training.parallel import first_replica


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _sums(logits, batch) -> dict:
    """Sums of loss, correct predictions and real examples, over all devices."""
    mask = batch['mask']
    correct = (jnp.argmax(logits, -1) == batch['label']) * mask
    sums = {'loss': jnp.sum(cross_entropy(logits, batch['label']) * mask),
            'correct': jnp.sum(correct), 'count': jnp.sum(mask)}
    return jax.lax.psum(sums, BATCH_AXIS)


def eval_step(state, batch: dict) -> dict:
    """Sums with the statistics in state.batch_stats (running averages or PreciseBN)."""
    logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                            batch['image'], train=False)
    return _sums(logits, batch)


def batch_stats_eval_step(state, batch: dict) -> dict:
    """Sums with each batch normalized by its own statistics, pooled as in training.

    The models have no dropout, so train=True changes only the norms; the running averages
    it would update are discarded.
    """
    logits, _ = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                               batch['image'], train=True, mutable=['batch_stats'])
    return _sums(logits, batch)


def batch_moments_step(state, batch: dict) -> dict:
    """Every BatchNorm's E[x] and E[x^2] on one training batch, weights frozen, train mode.

    Each layer sees the batch normalized by the layers below it as in training; moments
    are already pooled over the normalization batch, and here averaged over devices.
    """
    _, mutated = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                                batch['image'], train=True,
                                mutable=['batch_stats', 'batch_moments'])
    moments = jax.tree.map(lambda sown: sown[0], mutated['batch_moments'],
                           is_leaf=lambda x: isinstance(x, tuple))
    return jax.lax.pmean(moments, BATCH_AXIS)


def precise_batch_stats(p_batch_moments_step, state, batches, in_flight: int) -> dict:
    """PreciseBN (Wu & Johnson 2021): population statistics with equal weight per batch.

    The mean is the average of batch means; the variance is the average E[x^2] minus the
    squared mean, so over equal batches of a whole split both are its exact statistics.
    Returns replicated batch_stats shaped like state.batch_stats. At most `in_flight` batches
    are dispatched and unfinished at a time (config.steps_in_flight), as in training.
    """
    totals, queue = None, parallel.StepQueue(in_flight)
    for batch in batches:
        moments = p_batch_moments_step(state, batch)
        totals = moments if totals is None else jax.tree.map(jnp.add, totals, moments)
        queue.add(totals)
    population = jax.tree.map(lambda t: t / len(batches), totals)

    def to_stats(layer):
        return {'mean': layer['mean'],
                'var': jnp.maximum(layer['mean_sq'] - jnp.square(layer['mean']), 0.0)}
    return jax.tree.map(to_stats, population,
                        is_leaf=lambda x: isinstance(x, dict) and 'mean_sq' in x)


def evaluate(p_step, state, batches, in_flight: int) -> dict:
    """Loss and accuracy over a whole (masked) split, at most `in_flight` batches dispatched
    and unfinished at a time."""
    sums, queue = [], parallel.StepQueue(in_flight)
    for batch in batches:
        sums.append(p_step(state, batch))
        queue.add(sums[-1])
    # psum gives every device the totals; read one replica (multi-host safe).
    sums = first_replica(sums)
    totals = jax.tree.map(lambda *xs: float(np.sum(xs)), *sums)
    return {'loss': totals['loss'] / totals['count'],
            'accuracy': totals['correct'] / totals['count']}


# The evaluated splits, in row order: validation (carved from the training split, where
# every choice is made) and test (only reported).
SPLITS = ('val', 'test')


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What every evaluation kind is prepared from, once per run."""
    config: object  # the run's config
    feed: data.TrainFeed  # the run's training batches (PreciseBN's sample)
    splits: dict  # SPLITS name -> (images, labels), whole
    batches: dict  # SPLITS name -> that split in config.eval.batch_size batches
    devices: list
    p_eval: object  # eval_step, pmapped

    @property
    def in_flight(self) -> int:
        # Bounded as training is: PreciseBN's 80 batches dispatched at once deadlocked XLA's
        # CPU all-reduce between simulated devices (twice in the Wu & Johnson study).
        return self.config.steps_in_flight

    def pmap(self, fn):
        return parallel.pmap(fn, self.devices)

    def each_split(self, p_step, state, batches: dict | None = None) -> dict:
        batches = batches or self.batches
        return {split: evaluate(p_step, state, batches[split], self.in_flight)
                for split in SPLITS}


# Each kind in catalog.EVAL_STATS: (EvalContext) -> evaluate(state) -> {split: {'loss',
# 'accuracy'}} for every split in SPLITS, the statistics computed once for both.

def ema_evaluation(ctx: EvalContext):
    """The running averages the state carries."""
    return lambda state: ctx.each_split(ctx.p_eval, state)


def precise_evaluation(ctx: EvalContext):
    """PreciseBN statistics, recomputed on a fixed sample at every evaluation."""
    p_moments = ctx.pmap(batch_moments_step)
    # A fixed sample, the first batches of the seed's first epoch, the same at every
    # evaluation: it keeps PreciseBN from adding sampling noise between checkpoints.
    precise_batches = list(ctx.feed.batches(0, precise_bn_batch_count(ctx.config)))

    def evaluate_precise(state):
        stats = precise_batch_stats(p_moments, state, precise_batches, ctx.in_flight)
        return ctx.each_split(ctx.p_eval, state.replace(batch_stats=stats))
    return evaluate_precise


def batch_evaluation(ctx: EvalContext):
    """Each evaluated batch normalized by its own statistics."""
    p_batch_eval = ctx.pmap(batch_stats_eval_step)
    # Normalized in batches as large as training's, over the same devices and ghosts,
    # each a random draw of the split's images fixed by the seed.
    train_sized = {split: data.eval_batches(images_labels, ctx.feed.info,
                                            ctx.config.batch_size, ctx.feed.layout,
                                            shuffle_seed=ctx.config.seed)
                   for split, images_labels in ctx.splits.items()}
    return lambda state: ctx.each_split(p_batch_eval, state, train_sized)


def make_evaluator(config, feed: data.TrainFeed, splits: dict, devices: list,
                   uses_batch_stats: bool):
    """Returns evaluate_all(state) -> row entries for every split and every kind in
    config.eval.stats: {split}_loss_{kind}, {split}_accuracy_{kind}.

    `feed`: the run's training batches; `splits`: SPLITS name -> (images, labels). The first
    kind is also reported as the headline {split}_loss and {split}_accuracy. Without
    BatchNorm layers all kinds are the same computation, so it runs once.
    """
    kinds = tuple(config.eval.stats)
    batches = {split: data.eval_batches(splits[split], feed.info, config.eval.batch_size,
                                        feed.layout) for split in SPLITS}
    ctx = EvalContext(config, feed, {split: splits[split] for split in SPLITS}, batches,
                      devices, parallel.pmap(eval_step, devices))
    if uses_batch_stats:
        evaluations = {kind: catalog.implementation(catalog.EVAL_STATS, 'eval.stats', kind)(ctx)
                       for kind in kinds}
    else:
        evaluations = dict.fromkeys(kinds, ema_evaluation(ctx))

    def evaluate_all(state) -> dict:
        results = {}
        for kind in kinds:
            if uses_batch_stats or not results:
                results[kind] = evaluations[kind](state)
            else:
                results[kind] = results[kinds[0]]
        row = {}
        for split in SPLITS:
            row[f'{split}_loss'] = results[kinds[0]][split]['loss']
            row[f'{split}_accuracy'] = results[kinds[0]][split]['accuracy']
            for kind, result in results.items():
                row[f'{split}_loss_{kind}'] = result[split]['loss']
                row[f'{split}_accuracy_{kind}'] = result[split]['accuracy']
        return row
    return evaluate_all
