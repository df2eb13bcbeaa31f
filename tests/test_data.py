"""Datasets: the embedded split, batch shapes, seeded order, and official MNIST offline."""

import os

import numpy as np
import pytest

from bn_study import choices, data
from tests.conftest import SHARED_MNIST


def test_embedded_split_is_stratified_and_disjoint():
    _, labels = data._read_embedded_digits()
    train, test = data.embedded_split(labels)
    assert len(train) == 4000 and len(test) == 1000
    assert not set(train) & set(test)
    assert np.bincount(labels[train]).tolist() == [400] * 10
    assert np.bincount(labels[test]).tolist() == [100] * 10


def test_embedded_dataset_registers_once(make_config):
    config = make_config()
    builder = data.load_builder(config.data)
    assert data.num_examples(builder, 'train') == 4000
    assert data.num_examples(builder, 'test') == 1000
    info_file = os.path.join(config.data.data_dir, 'mnist_5k', '1.0.0', 'dataset_info.json')
    stamp = os.stat(info_file).st_mtime_ns
    data.load_builder(config.data)  # second call reads, does not rebuild
    assert os.stat(info_file).st_mtime_ns == stamp


def _first_batches(config, seed, n, num_devices=4):
    builder = data.load_builder(config.data)
    info = data.DATASETS['mnist_5k']
    batches = data.train_batches(builder, info, 128, num_devices, seed)
    return [next(batches) for _ in range(n)]


def test_train_batches_shape_standardisation_and_seeded_order(make_config):
    config = make_config()
    a = _first_batches(config, seed=0, n=31)
    assert a[0]['image'].shape == (4, 32, 28, 28, 1) and a[0]['image'].dtype == np.float32
    assert a[0]['label'].shape == (4, 32) and a[0]['label'].dtype == np.int32
    images = np.concatenate([b['image'].reshape(-1) for b in a])
    assert abs(images.mean()) < 0.1 and abs(images.std() - 1) < 0.1  # standardised
    b = _first_batches(config, seed=0, n=31)
    c = _first_batches(config, seed=1, n=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x['image'], y['image'])
    assert not np.array_equal(a[0]['label'], c[0]['label'])
    # One epoch (31 batches) draws 3,968 distinct examples, close to 400 per class.
    counts = np.bincount(np.concatenate([x['label'].ravel() for x in a]), minlength=10)
    assert counts.sum() == 3968 and counts.max() <= 400


def test_epochs_are_different_permutations(make_config):
    batches = _first_batches(make_config(), seed=0, n=62, num_devices=1)
    first = np.concatenate([b['label'].ravel() for b in batches[:31]])
    second = np.concatenate([b['label'].ravel() for b in batches[31:]])
    assert not np.array_equal(first, second)


def test_eval_batches_complete_the_last_batch_with_masked_real_images(make_config):
    builder = data.load_builder(make_config().data)
    batches = data.eval_batches(builder, data.DATASETS['mnist_5k'], 384, 4)
    assert len(batches) == 3
    assert all(b['image'].shape == (4, 96, 28, 28, 1) for b in batches)
    assert sum(b['mask'].sum() for b in batches) == 1000
    last = {k: v.reshape(384, *v.shape[2:]) for k, v in batches[-1].items()}
    real = 1000 - 2 * 384
    assert last['mask'][:real].all() and not last['mask'][real:].any()
    # The filler is the split's first images again, so batch statistics stay real.
    first = batches[0]['image'].reshape(384, 28, 28, 1)
    np.testing.assert_array_equal(last['image'][real:], first[:384 - real])


def test_shuffled_eval_batches_hold_every_test_image_once(make_config):
    builder = data.load_builder(make_config().data)
    info = data.DATASETS['mnist_5k']
    plain = data.eval_batches(builder, info, 500, 1)
    shuffled = data.eval_batches(builder, info, 500, 1, shuffle_seed=0)
    labels = lambda batches: np.concatenate([b['label'].ravel() for b in batches])
    assert sorted(labels(plain)) == sorted(labels(shuffled))
    # The embedded test split is stored in class order; a shuffled batch mixes all classes.
    assert len(np.unique(plain[0]['label'])) == 5
    assert len(np.unique(shuffled[0]['label'])) == 10


def test_official_mnist_prepares_offline_from_manual_dir(make_config, tmp_path):
    config = make_config(data__name='mnist', data__data_dir=str(tmp_path),
                         data__manual_dir=SHARED_MNIST, data__download=False)
    builder = data.load_builder(config.data)
    assert data.num_examples(builder, 'train') == 60000
    assert data.num_examples(builder, 'test') == 10000
    batch = next(data.train_batches(builder, data.DATASETS['mnist'], 64, 2, seed=0))
    assert batch['image'].shape == (2, 32, 28, 28, 1)


def test_missing_dataset_offline_says_how_to_prepare(make_config, tmp_path):
    config = make_config(data__name='mnist', data__data_dir=str(tmp_path), data__download=False)
    with pytest.raises(choices.ConfigError, match='is not prepared.*manual_dir'):
        data.load_builder(config.data)
    config = make_config(data__name='mnist', data__data_dir=str(tmp_path),
                         data__manual_dir=str(tmp_path))
    with pytest.raises(choices.ConfigError, match='lacks train-images-idx3-ubyte.gz'):
        data.load_builder(config.data)
