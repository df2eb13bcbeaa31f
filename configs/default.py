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
    # Simulated CPU devices (only when JAX runs on the CPU; ignored on GPUs and TPUs): N > 0
    # splits the host into N devices before JAX starts; 0 leaves JAX's default (1, or what
    # XLA_FLAGS says). XLA runs this study's small convolutions on about one core per
    # device, so 2 devices train the seed CNN about 1.8x faster than 1 on a 2-core CPU
    # (scripts/benchmark.py). With global BN statistics (the default) the experiment is the
    # same on any device count, up to float rounding (docs/determinism.md).
    config.cpu_devices = 2
    config.num_devices = 0  # local devices to pmap over: 0 = all, N = the first N
    # JAX's persistent compilation cache: a program compiled once (e.g. by another seed of the
    # same config, or a resumed run) is read back instead of compiled again, in any process
    # on this machine; the executable is the same, so results are too. '' leaves JAX's
    # default (off unless JAX_COMPILATION_CACHE_DIR is set).
    config.compilation_cache_dir = os.path.expanduser('~/.cache/bn_study/xla')

    config.batch_size = 128  # global batch; must split evenly over the devices
    config.num_epochs = 5  # passes over the training split (the remainder batch is dropped)
    # Every N steps, a progress line in the log and TensorBoard: steps/s, examples/s, ETA and
    # the step's loss (one host sync each time); 0: none.
    config.progress_every_steps = 20
    # Training steps (and evaluation or PreciseBN batches) dispatched to the devices that the
    # host has not yet waited for: after dispatching step N it waits for step N - K + 1.
    # 0: no limit. On simulated CPU devices a long queue stalls XLA's collectives (seconds at
    # a time) or deadlocks them (measured: 155 training steps, or PreciseBN's 80 batches,
    # dispatched at once aborted after the 40 s rendezvous timeout); 2 keeps the host one
    # step ahead, as fast as any larger K measured here. Accelerators may use more.
    config.steps_in_flight = 2

    config.model = ml_collections.ConfigDict()
    config.model.name = 'simple_cnn'  # simple_cnn | vgg | resnet | mlp
    # Where the norm goes; each family has its own closed set (bn_study/nn/catalog.py):
    #   simple_cnn, vgg: none | before_act | after_act | after_pool | after_pool_before_act
    #       (the same in every hidden layer), a preset: so_answer | bn_paper | airbench |
    #       none, or one position per layer, e.g.
    #       'conv1=after_act,conv2=after_pool_before_act,fc1=before_act,fc2=after_layer'
    #       (a layer without a pool takes none | before_act | after_act; the logits layer
    #       none | after_layer; docs/networks.md)
    #   mlp: none | before_act | after_act, a preset, or one position per layer (fc1..fc4)
    #   resnet (the residual unit): original | bn_after_addition | relu_before_addition |
    #          relu_only_preactivation | full_preactivation | none
    config.model.bn_position = 'before_act'
    # True: a norm after the logits layer too (with a uniform bn_position or a residual
    # unit; a preset or a per-layer placement gives the logits layer its own position)
    config.model.bn_on_output = False
    config.model.dtype = 'float32'  # float32 | bfloat16 | float16: compute dtype; params stay fp32
    # Each family's own settings; only config.model.<name> is read.
    config.model.simple_cnn = ml_collections.ConfigDict()
    config.model.simple_cnn.conv_features = (32, 64)  # output channels of conv1, conv2 (3x3)
    config.model.simple_cnn.hidden_features = 256  # width of FC1
    config.model.vgg = ml_collections.ConfigDict()
    config.model.vgg.depth = 11  # 11 | 13 | 16 | 19: conv layers + 3 (VGG's own counting)
    config.model.vgg.width = 64  # first stage's channels; stages are x(1, 2, 4, 8, 8)
    config.model.vgg.hidden_features = ()  # hidden dense layers before the logits, e.g. (512,)
    config.model.resnet = ml_collections.ConfigDict()
    config.model.resnet.depth = 20  # basic: 6n+2 (20, 32, 44, 56, 110); bottleneck: 9n+2 (164)
    config.model.resnet.block = 'basic'  # basic | bottleneck
    config.model.resnet.width = 16  # first stage's channels; stages are x(1, 2, 4)
    config.model.resnet.shortcut = 'projection'  # projection | zero_pad, where shapes change
    config.model.mlp = ml_collections.ConfigDict()
    config.model.mlp.hidden_features = (100, 100, 100)  # the BN paper's MNIST network
    config.model.mlp.activation = 'sigmoid'  # sigmoid | relu
    config.model.mlp.init_stddev = 0.0  # 0: LeCun normal; > 0: kernels ~ N(0, stddev^2)

    config.norm = ml_collections.ConfigDict()
    config.norm.kind = 'batch'  # batch | layer | group | instance | none
    # batch only. global | per_device | ghost: statistics over the whole global batch (the
    # same experiment on any number of devices), each device's slice (changes with the device
    # count), or ghost batches of ghost_batch_size inside each device's slice.
    config.norm.stats_scope = 'global'
    config.norm.ghost_batch_size = 32  # ghost only: must divide the per-device batch
    # group only: must divide every normalized layer's channels. 4 divides every default
    # width here (16..512, and the MLP's 100); Wu & He use 32 on ResNet-50's 64+ channels.
    config.norm.num_groups = 4
    # batch only. Flax convention: running = momentum * running + (1 - momentum) * batch.
    # 0.9 equals PyTorch's momentum=0.1; Flax's own default 0.99 is too slow for short runs.
    config.norm.momentum = 0.9
    config.norm.epsilon = 1e-5
    config.norm.use_scale = True  # learned per-channel scale (gamma)
    config.norm.use_bias = True  # learned per-channel shift (beta)
    # resnet with units original | relu_only_preactivation only (their branch ends on a
    # norm): start that norm at scale 0, so each unit begins as its shortcut.
    config.norm.zero_init_last_scale = False

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 500  # global, for ema and precise; the last batch is masked
    # Which BN statistics the test set is evaluated with, each reported side by side; the
    # first is the headline test_accuracy. ema: the running averages; precise: PreciseBN,
    # population statistics recomputed with frozen weights; batch: each test batch's own,
    # in batches of batch_size normalized as in training, drawn by a shuffle fixed by `seed`.
    # With per_device or ghost statistics, ema averages the slices' own variances and batch
    # normalizes each test slice by itself, as training did; precise measures the sample's
    # whole variance, the spread between slices included.
    config.eval.stats = ('ema',)
    # Training examples PreciseBN averages over (rounded up to whole batches): the first
    # batches of the seed's first epoch, the same sample at every evaluation.
    config.eval.precise_bn_examples = 2048

    config.diagnostics = ml_collections.ConfigDict()
    # Per-norm-layer signal statistics on a training batch every N steps and after the last
    # step (diagnostics.jsonl); 0: after the last step only.
    config.diagnostics.every_steps = 50
    # Percentiles (0-100) of the input of each activation's first unit or channel over the
    # whole batch, logged with the diagnostics (plain blocks: simple_cnn, vgg, mlp); () for
    # none. Ioffe & Szegedy's Figure 1 draws (15, 50, 85).
    config.diagnostics.percentiles = ()

    config.data = ml_collections.ConfigDict()
    # mnist_5k (embedded, offline) | mnist | fashion_mnist | cifar10 | cifar100 | svhn_cropped,
    # or the name of any image-classification dataset prepared in data_dir (e.g. written by
    # tfds.dataset_builders.store_as_tfds_dataset; then mean and std are required).
    config.data.name = 'mnist_5k'
    config.data.data_dir = os.path.expanduser('~/tensorflow_datasets')  # TFDS data_dir
    # Folder holding the four official MNIST archives, to prepare `mnist` with no network
    # (e.g. ../shared/datasets/mnist); '' downloads them instead.
    config.data.manual_dir = ''
    config.data.download = True  # False: fail at once if a dataset is neither prepared nor manual
    # The validation split: this fraction of each class of the training split, drawn once by
    # a fixed generator (data.validation_rows) and never trained on. Every choice (the
    # selected epoch, a study's tuned settings) is made on it; the test split is only
    # reported. 0.1 holds out 400 of the embedded digits' 4,000, 5,999 of MNIST's 60,000
    # (a tenth of each class, rounded per class), 5,000 of CIFAR's 50,000.
    config.data.validation_fraction = 0.1
    # Per-channel standardisation on the [0, 1] scale; () = the catalogue's values (data.py).
    config.data.mean = ()
    config.data.std = ()
    # standard (the dataset's usual: pad_crop_flip for CIFAR, none for MNIST, Fashion-MNIST
    # and SVHN) | none | flip | pad_crop | pad_crop_flip
    config.data.augment = 'standard'
    config.data.crop_padding = 4  # pad_crop*: zero pixels added on each side before the crop
    # The training split is cut into this many equal shards, and every batch takes as many
    # examples from each. A multi-host run needs a multiple of its process count (each
    # process reads only its shards); the batches depend on (seed, train_shards) alone, not
    # on the number of devices or processes.
    config.data.train_shards = 1

    config.checkpoint = ml_collections.ConfigDict()
    # Orbax checkpoint every N steps and after the last step, in <workdir>/checkpoints;
    # 0: after the last step only. Rerunning the same command resumes from the newest one.
    config.checkpoint.every_steps = 500
    config.checkpoint.keep = 2  # the newest K checkpoints are kept

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
    # Adaptive gradient clipping (Brock et al. 2021, "High-Performance Large-Scale Image
    # Recognition Without Normalization", section 4): each unit's gradient (a kernel's slice
    # per output unit; a bias or scale vector as one unit, as in optax and the authors'
    # code) is rescaled to at most
    # agc_clipping * max(the unit's weight norm, agc_eps), before weight decay and momentum;
    # the logits layer is not clipped, as in the paper. 0 disables; the paper uses 0.01 to
    # 0.16 (smaller for larger batches).
    config.optimizer.agc_clipping = 0.0
    config.optimizer.agc_eps = 1e-3  # the weight norm below which zero-initialized units clip

    config.schedule = ml_collections.ConfigDict()
    config.schedule.name = 'cosine'  # constant | cosine | step
    config.schedule.warmup_epochs = 0.5  # linear warm-up from 0; 0 disables
    config.schedule.step_boundaries_epochs = ()  # step only: epochs at which the rate drops
    config.schedule.step_decay_factor = 0.1  # step only: multiplier at each boundary

    return config
