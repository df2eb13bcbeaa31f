"""The seed CNN written in PyTorch (eager), the benchmark's peer: same layers, placement, bias
rule, norm, optimizer and batch as the project's config, timed the same way.

torch is optional and not in requirements.txt (`pip install torch==2.13.0`, the CPU build).
"""

import resource
import time

import numpy as np

from bn_study.nn import placement


def unsupported(config) -> str | None:
    """Why the config has no PyTorch peer, or None if it has one."""
    if config.model.name != 'simple_cnn':
        return f'no PyTorch peer for model.name={config.model.name} (only simple_cnn)'
    if config.norm.kind not in ('batch', 'none'):
        return f'no PyTorch peer for norm.kind={config.norm.kind} (only batch, none)'
    if config.norm.kind == 'batch' and config.norm.stats_scope != 'global':
        return 'no PyTorch peer for norm.stats_scope other than global'
    if config.norm.use_scale != config.norm.use_bias:
        return "PyTorch's BatchNorm has scale and bias both or neither"
    if config.model.dtype != 'float32':
        return 'the PyTorch peer runs in float32 only'
    return None


def _network(config, image_shape: tuple[int, int, int], num_classes: int):
    """nn.Sequential of the seed CNN in NCHW, PyTorch's own layout."""
    import torch.nn as tnn
    batch_norm = config.norm.kind == 'batch'
    ops = placement.layer_ops('simple_cnn', dict(config.model.simple_cnn),
                              config.model.bn_position, config.model.bn_on_output)

    def norm(features, dims):
        if not batch_norm:
            return tnn.Identity()
        cls = tnn.BatchNorm2d if dims == 2 else tnn.BatchNorm1d
        # PyTorch's momentum is the weight of the new batch: 1 - flax's.
        return cls(features, eps=config.norm.epsilon, momentum=1 - config.norm.momentum,
                   affine=config.norm.use_scale)

    def block(layer_of, features, dims, name):
        layer = layer_of(bias=not (placement.norm_follows_layer(ops[name]) and batch_norm))
        made = {'layer': layer, 'norm': norm(features, dims), 'act': tnn.ReLU(),
                # ceil_mode pads the end as SAME does: 7 -> 4.
                'pool': tnn.MaxPool2d(2, 2, ceil_mode=True)}
        return [made[op] for op in ops[name]]

    height, width, channels = image_shape
    layers = []
    for i, features in enumerate(config.model.simple_cnn.conv_features, start=1):
        layers += block(lambda bias, c=channels, f=features: tnn.Conv2d(c, f, 3, padding=1,
                                                                        bias=bias),
                        features, 2, f'conv{i}')
        channels, height, width = features, -(-height // 2), -(-width // 2)
    hidden = config.model.simple_cnn.hidden_features
    layers.append(tnn.Flatten())
    layers += block(lambda bias: tnn.Linear(channels * height * width, hidden, bias=bias),
                    hidden, 1, 'fc1')
    normalized_output = 'norm' in ops['fc2']
    layers.append(tnn.Linear(hidden, num_classes, bias=not (normalized_output and batch_norm)))
    if normalized_output:
        layers.append(norm(num_classes, 1))
    return tnn.Sequential(*layers)


def _optimizer(config, parameters):
    import torch
    opt = config.optimizer
    if opt.name == 'sgd':
        return torch.optim.SGD(parameters, lr=opt.learning_rate, momentum=opt.momentum,
                               nesterov=opt.nesterov, weight_decay=opt.weight_decay)
    cls = torch.optim.Adam if opt.name == 'adam' else torch.optim.AdamW
    return cls(parameters, lr=opt.learning_rate, betas=(opt.b1, opt.b2), eps=opt.eps,
               weight_decay=opt.weight_decay)


def measure(config, image_shape: tuple[int, int, int], num_classes: int, steps: int,
            warmup: int) -> dict:
    """Training-step figures of the peer on random data of the config's shapes."""
    import torch
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(config.seed)
    model = _network(config, image_shape, num_classes).to(device)
    optimizer = _optimizer(config, model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(config.seed)
    images = torch.as_tensor(rng.normal(size=(config.batch_size, image_shape[2],
                                              *image_shape[:2])).astype(np.float32),
                             device=device)
    labels = torch.as_tensor(rng.integers(0, num_classes, config.batch_size), device=device)
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss
    start = time.perf_counter()
    step()
    sync()
    first_s = time.perf_counter() - start
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)  # waits for the last step
    step_s = (time.perf_counter() - start) / steps
    figures = {'platform': device, 'torch': torch.__version__,
               'threads': torch.get_num_threads(), 'batch_size': config.batch_size,
               'steps': steps, 'train_examples_per_s': config.batch_size / step_s,
               'train_step_ms': step_s * 1e3, 'train_compile_s': first_s,
               'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device == 'cuda':
        figures['device_peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    return figures
