"""Datasets: the embedded split, the catalogue under mock data, directories, seeded and
resumable order, per-process shards, augmentation, and official MNIST offline."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bn_study import errors
from bn_study.training import catalog, data
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
    assert builder.info.splits['train'].num_examples == 4000
    assert builder.info.splits['test'].num_examples == 1000
    info_file = os.path.join(config.data.data_dir, 'mnist_5k', '1.0.0', 'dataset_info.json')
    stamp = os.stat(info_file).st_mtime_ns
    data.load_builder(config.data)  # second call reads, does not rebuild
    assert os.stat(info_file).st_mtime_ns == stamp


def _embedded(make_config):
    config = make_config()
    builder = data.load_builder(config.data)
    return builder, data.dataset_info(config.data, builder)


def _first_batches(make_config, seed, n, local_devices=4, start=0, augment='none',
                   num_shards=1, layout=None):
    builder, info = _embedded(make_config)
    layout = layout or data.Layout(local_devices=local_devices)
    shards, _ = data.read_train_and_validation(builder, 0.1, num_shards, layout)
    feed = data.TrainFeed(shards, info, augment, crop_padding=4, batch_size=128, layout=layout,
                          seed=seed)
    return list(feed.batches(start, start + n))


def test_train_batches_shape_standardisation_and_seeded_order(make_config):
    a = _first_batches(make_config, seed=0, n=28)
    assert a[0]['image'].shape == (4, 32, 28, 28, 1) and a[0]['image'].dtype == np.float32
    assert a[0]['label'].shape == (4, 32) and a[0]['label'].dtype == np.int32
    images = np.concatenate([b['image'].reshape(-1) for b in a])
    assert abs(images.mean()) < 0.1 and abs(images.std() - 1) < 0.1  # standardised
    b = _first_batches(make_config, seed=0, n=28)
    c = _first_batches(make_config, seed=1, n=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x['image'], y['image'])
    assert not np.array_equal(a[0]['label'], c[0]['label'])
    # One epoch (28 batches) draws 3,584 distinct examples of the 3,600 training rows (360
    # per class once the validation split holds out 40 of each class's 400).
    counts = np.bincount(np.concatenate([x['label'].ravel() for x in a]), minlength=10)
    assert counts.sum() == 3584 and counts.max() <= 360


def test_epochs_are_different_permutations(make_config):
    batches = _first_batches(make_config, seed=0, n=56, local_devices=1)
    first = np.concatenate([b['label'].ravel() for b in batches[:28]])
    second = np.concatenate([b['label'].ravel() for b in batches[28:]])
    assert not np.array_equal(first, second)


def test_a_stream_started_at_a_step_continues_the_uninterrupted_one(make_config):
    whole = _first_batches(make_config, seed=3, n=40, augment='pad_crop_flip')
    resumed = _first_batches(make_config, seed=3, n=15, start=25, augment='pad_crop_flip')
    for x, y in zip(whole[25:], resumed):
        np.testing.assert_array_equal(x['image'], y['image'])
        np.testing.assert_array_equal(x['label'], y['label'])


def test_each_process_feeds_its_devices_rows_of_the_same_global_batches(make_config):
    whole = _first_batches(make_config, seed=0, n=3, local_devices=4, num_shards=2,
                           augment='pad_crop_flip')
    for p in range(2):
        part = _first_batches(make_config, seed=0, n=3, num_shards=2, augment='pad_crop_flip',
                              layout=data.Layout(p, 2, 2))
        for x, y in zip(whole, part):
            np.testing.assert_array_equal(x['image'][2 * p:2 * p + 2], y['image'])
            np.testing.assert_array_equal(x['label'][2 * p:2 * p + 2], y['label'])


def test_each_process_keeps_only_its_shards_of_the_training_rows(make_config):
    builder, _ = _embedded(make_config)
    images, labels = data.read_split(builder, 'train')
    train, _ = data.validation_rows(labels, 0.1)
    part, _ = data.read_train_and_validation(builder, 0.1, 4, data.Layout(1, 2, 1))
    assert part.images.shape == (2, 900, 28, 28, 1) and part.first_shard == 2
    np.testing.assert_array_equal(part.images.reshape(-1, 28, 28, 1), images[train[1800:]])
    np.testing.assert_array_equal(part.labels.reshape(-1), labels[train[1800:]])


def test_the_validation_split_is_fixed_stratified_and_never_trained_on(make_config):
    builder, _ = _embedded(make_config)
    images, labels = data.read_split(builder, 'train')
    train, held = data.validation_rows(labels, 0.1)
    assert len(held) == 400 and len(train) == 3600 and not set(train) & set(held)
    np.testing.assert_array_equal(np.bincount(labels[held]), [40] * 10)  # stratified
    again_train, again_held = data.validation_rows(labels.copy(), 0.1)  # labels alone fix it
    np.testing.assert_array_equal(held, again_held)
    assert not np.array_equal(held, data.validation_rows(labels, 0.2)[1][:400])
    # Per class, not the first or last rows in file order (the embedded file is class-sorted).
    assert not np.array_equal(held[:40], np.flatnonzero(labels == 0)[-40:])
    shards, (val_images, val_labels) = data.read_train_and_validation(
        builder, 0.1, 1, data.Layout())
    np.testing.assert_array_equal(val_labels, labels[held])
    np.testing.assert_array_equal(val_images, images[held])
    np.testing.assert_array_equal(shards.images.reshape(-1, 28, 28, 1), images[train])


def test_augmentation_pads_crops_and_flips_as_configured(make_config):
    plain = _first_batches(make_config, seed=0, n=1, local_devices=1)[0]['image'][0]
    flipped = _first_batches(make_config, seed=0, n=1, local_devices=1,
                             augment='flip')[0]['image'][0]
    same = [np.array_equal(p, f) for p, f in zip(plain, flipped)]
    mirrored = [np.array_equal(p[:, ::-1], f) for p, f in zip(plain, flipped)]
    assert all(s or m for s, m in zip(same, mirrored)) and 30 < sum(mirrored) < 98
    cropped = _first_batches(make_config, seed=0, n=1, local_devices=1,
                             augment='pad_crop')[0]['image'][0]
    background = plain.min()  # a zero pixel, standardised; the padding is zeros too
    for p, c in zip(plain, cropped):  # each crop is the image shifted by at most 4 pixels
        padded = np.pad(p, [(4, 4), (4, 4), (0, 0)], constant_values=background)
        assert any(np.array_equal(padded[dy:dy + 28, dx:dx + 28], c)
                   for dy in range(9) for dx in range(9))


def test_cifar10_under_mock_data_gets_cifar_normalization_and_augmentation(make_config,
                                                                           tmp_path):
    config = make_config(data__name='cifar10', data__data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=256):
        builder = data.load_builder(config.data)
        info = data.dataset_info(config.data, builder)
        shards, _ = data.read_train_and_validation(builder, 0.1, 1,
                                                   data.Layout(local_devices=2))
    assert info.image_shape == (32, 32, 3) and len(info.mean) == 3
    assert data.augmentation(config.data, info) == 'pad_crop_flip'
    assert data.augmentation(make_config().data, catalog.DATASETS['mnist_5k']) == 'none'
    feed = data.TrainFeed.from_config(config, shards, info, data.Layout(local_devices=2))
    assert (feed.augment, feed.crop_padding, feed.batch_size) == ('pad_crop_flip', 4, 128)
    batch = next(dataclasses.replace(feed, batch_size=64).batches(0, 4))
    assert batch['image'].shape == (2, 32, 32, 32, 3)


def test_a_dataset_prepared_in_a_directory_loads_by_name(make_config, tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(40) % 4
    split = lambda rows: tf.data.Dataset.from_tensor_slices(
        {'image': images[rows], 'label': labels[rows]})
    tfds.dataset_builders.store_as_tfds_dataset(
        name='tiny_colours', version='1.0.0', data_dir=str(tmp_path),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 3)),
            'label': tfds.features.ClassLabel(num_classes=4)}),
        split_datasets={'train': split(slice(0, 32)), 'test': split(slice(32, 40))})
    config = make_config(data__name='tiny_colours', data__data_dir=str(tmp_path))
    builder = data.load_builder(config.data)
    with pytest.raises(errors.ConfigError, match='mean and config.data.std must be given'):
        data.dataset_info(config.data, builder)
    config = make_config(data__name='tiny_colours', data__data_dir=str(tmp_path),
                         data__mean=(0.5, 0.5, 0.5), data__std=(0.25, 0.25, 0.25))
    info = data.dataset_info(config.data, builder)
    assert (info.num_classes, info.image_shape) == (4, (8, 8, 3))
    test_images, _ = data.read_split(builder, 'test')
    assert test_images.shape == (8, 8, 8, 3)
    with pytest.raises(errors.ConfigError, match='neither one of: mnist_5k, .* nor a dataset'):
        data.load_builder(make_config(data__name='tiny_shapes', data__data_dir=str(tmp_path)).data)


def test_eval_batches_complete_the_last_batch_with_masked_real_images(make_config):
    builder, info = _embedded(make_config)
    batches = data.eval_batches(data.read_split(builder, 'test'), info, 384,
                                data.Layout(local_devices=4))
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
    builder, info = _embedded(make_config)
    test = data.read_split(builder, 'test')
    layout = data.Layout()
    plain = data.eval_batches(test, info, 500, layout)
    shuffled = data.eval_batches(test, info, 500, layout, shuffle_seed=0)
    labels = lambda batches: np.concatenate([b['label'].ravel() for b in batches])
    assert sorted(labels(plain)) == sorted(labels(shuffled))
    # The embedded test split is stored in class order; a shuffled batch mixes all classes.
    assert len(np.unique(plain[0]['label'])) == 5
    assert len(np.unique(shuffled[0]['label'])) == 10


def test_official_mnist_prepares_offline_from_manual_dir(make_config, tmp_path):
    config = make_config(data__name='mnist', data__data_dir=str(tmp_path),
                         data__manual_dir=SHARED_MNIST, data__download=False)
    builder = data.load_builder(config.data)
    assert builder.info.splits['train'].num_examples == 60000
    assert builder.info.splits['test'].num_examples == 10000
    layout = data.Layout(local_devices=2)
    shards, validation = data.read_train_and_validation(builder, 0.1, 1, layout)
    # A tenth of each class, rounded per class: 5,999 of the 60,000 in all.
    assert shards.labels.shape == (1, 54001) and len(validation[1]) == 5999
    feed = data.TrainFeed(shards, catalog.DATASETS['mnist'], 'none', crop_padding=4,
                          batch_size=64, layout=layout, seed=0)
    batch = next(feed.batches(0, 1))
    assert batch['image'].shape == (2, 32, 28, 28, 1)


def test_missing_dataset_offline_says_how_to_prepare(make_config, tmp_path):
    config = make_config(data__name='mnist', data__data_dir=str(tmp_path), data__download=False)
    with pytest.raises(errors.DatasetError, match='is not prepared.*manual_dir'):
        data.load_builder(config.data)
    config = make_config(data__name='mnist', data__data_dir=str(tmp_path),
                         data__manual_dir=str(tmp_path))
    with pytest.raises(errors.DatasetError, match='lacks train-images-idx3-ubyte.gz'):
        data.load_builder(config.data)
