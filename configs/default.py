"""Default config: the seed CNN on the embedded MNIST digits, every setting listed.

Run: python scripts/train.py --config=configs/default.py --workdir=runs/x
Override any value: --config.model.bn_position=after_act --config.seed=3
"""

import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the full training config; `arg` is unused here (studies build on this)."""
    del arg
    config = ml_collections.ConfigDict()

    config.seed = 0  # any int: parameter init and data order both derive from it
    # Simulated CPU devices (only when JAX runs on the CPU): 0 leaves JAX's default
    # (1, or what XLA_FLAGS says); N > 0 splits the host into N devices before JAX starts.
    config.cpu_devices = 0
    config.num_devices = 0  # local devices to pmap over: 0 = all, N = the first N

    config.batch_size = 128  # global batch; must split evenly over the devices
    config.eval_batch_size = 500  # global; the last test batch is padded and masked
    config.num_epochs = 5  # passes over the training split (the remainder batch is dropped)

    config.model = ml_collections.ConfigDict()
    config.model.name = 'simple_cnn'  # simple_cnn
    # none | before_act | after_act | after_pool: where BN goes in both conv blocks and FC1
    config.model.bn_position = 'before_act'
    config.model.bn_on_output = False  # True: BN after FC2 too (the well-known answer does)
    config.model.conv_features = (32, 64)  # output channels of conv1 and conv2 (3x3, SAME)
    config.model.hidden_features = 256  # width of FC1
    config.model.dtype = 'float32'  # float32 | bfloat16 | float16: compute dtype; params stay fp32

    config.norm = ml_collections.ConfigDict()
    # global | per_device: BN statistics over the whole global batch, or each device's slice
    config.norm.batch_stats = 'global'
    # Flax convention: running = momentum * running + (1 - momentum) * batch.
    # 0.9 equals PyTorch's momentum=0.1; Flax's own default 0.99 is too slow for short runs.
    config.norm.momentum = 0.9
    config.norm.epsilon = 1e-5

    config.data = ml_collections.ConfigDict()
    config.data.name = 'mnist_5k'  # mnist_5k (embedded, offline) | mnist (official TFDS)
    config.data.data_dir = os.path.expanduser('~/tensorflow_datasets')  # TFDS data_dir
    # Folder holding the four official MNIST archives, to prepare `mnist` with no network
    # (e.g. ../shared/datasets/mnist); '' downloads them instead.
    config.data.manual_dir = ''
    config.data.download = True  # False: fail at once if a dataset is neither prepared nor manual

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = 'sgd'  # sgd | adam | adamw
    config.optimizer.learning_rate = 0.05  # peak rate, reached after warm-up
    config.optimizer.momentum = 0.9  # sgd only; 0 disables momentum
    config.optimizer.nesterov = False  # sgd only
    config.optimizer.b1 = 0.9  # adam, adamw
    config.optimizer.b2 = 0.999  # adam, adamw
    config.optimizer.eps = 1e-8  # adam, adamw
    config.optimizer.weight_decay = 5e-4  # L2 for sgd/adam, decoupled for adamw; 0 disables
    # all | all_but_norm | kernels_only: which parameters weight decay touches
    config.optimizer.weight_decay_on = 'all_but_norm'

    config.schedule = ml_collections.ConfigDict()
    config.schedule.name = 'cosine'  # constant | cosine | step
    config.schedule.warmup_epochs = 0.5  # linear warm-up from 0; 0 disables
    config.schedule.step_boundaries_epochs = ()  # step only: epochs at which the rate drops
    config.schedule.step_decay_factor = 0.1  # step only: multiplier at each boundary

    return config
