"""Which layer's norm carries the effect? A layer ablation of the seed CNN's placements.

From each preset that normalizes several layers (catalog.PRESETS: the well-known Stack
Overflow answer's layout, the BN paper's, airbench's), one layer's norm is removed at a
time; from no normalization, one layer's norm is added at a time (at the BN paper's
position, before the activation; the logits layer FC2 takes its one position, after it).
Every option is a per-layer placement, so each pair differs in exactly one layer.

A tuned comparison (bn_study/studies/tuning.py) with the main job's protocol: each option
gets its own learning rate, chosen on the validation split over one tuning seed from
0.03, 0.1 and 0.3; then every option runs at its own rate on 4 other seeds. Only the 14
pairs that isolate one layer are decided (a preset against it without that layer, none
with that layer against none), Holm-adjusted as one family; the report's Answer reads them
out layer by layer (its effects table). 18 options: 54 tuning and 72 comparison runs of 2
epochs on the embedded digits.

Run:
    python scripts/sweep.py --config=configs/placement_ablation.py \
        --sweep_dir=studies/placement_ablation --report_dir=results/placement_ablation
Time: see WORKSPACE.md, "Studies".
"""

from bn_study import errors
from bn_study.analysis import report_spec
from bn_study.nn import placement
from bn_study.studies import tuning
from configs import seed_question

PRESETS = ('so_answer', 'bn_paper', 'airbench')  # the presets with norms in several layers
# Where "none + layer" puts the added norm: the BN paper's position on the hidden layers;
# the logits layer takes its only one.
ADDED_AT = {'conv_pooled': 'before_act', 'conv': 'before_act', 'dense': 'before_act',
            'output': 'after_layer'}
NONE = 'none'


def _spec(positions: dict) -> str:
    return placement.SEPARATOR.join(f'{layer}{placement.ASSIGN}{position}'
                                    for layer, position in positions.items())


def _options_and_effects():
    """option -> its per-layer placement, and the effects table's cells (layer x place)."""
    config = get_config()
    settings = dict(config.model.simple_cnn)
    kinds = dict(placement.layers('simple_cnn', settings))
    options, cells = {}, []
    for preset in PRESETS:
        full = placement.positions('simple_cnn', settings, preset, False)
        options[preset] = _spec(full)
        for layer, position in full.items():
            if position != 'none':
                name = f'{preset} -{layer}'
                options[name] = _spec({**full, layer: 'none'})
                cells.append(report_spec.Effect(layer, f'removed from {preset}', preset, name))
    bare = {layer: 'none' for layer in kinds}
    options[NONE] = _spec(bare)
    for layer, kind in kinds.items():
        name = f'{NONE} +{layer}'
        options[name] = _spec({**bare, layer: ADDED_AT[kind]})
        cells.append(report_spec.Effect(layer, 'added to none', name, NONE))
    assert len(set(options.values())) == len(options)  # each option a different network
    return ({name: {'model.bn_position': spec, 'model.bn_on_output': False}
             for name, spec in options.items()}, tuple(cells))


def _check(arg: str | None) -> None:
    if arg:
        raise errors.ConfigError(f'configs/placement_ablation.py:{arg} is no variant; this '
                                 'study has one (give no argument)')


def get_config(arg: str | None = None):
    """The main job's base config: the seed CNN, 2 epochs, on the embedded digits."""
    _check(arg)
    return seed_question.get_config()


def get_tuning(arg: str | None = None) -> tuning.Tuning:
    _check(arg)
    options, cells = _options_and_effects()
    return tuning.Tuning(options, {'optimizer.learning_rate': (0.03, 0.1, 0.3)},
                         tuning_seeds=(100,), comparison_seeds=tuple(range(4)),
                         pairs=tuple((cell.a, cell.b) for cell in cells))


def get_report(arg: str | None = None) -> report_spec.ReportSpec:
    _check(arg)
    return report_spec.ReportSpec(compare='model.bn_position', margin=0.005,
                                  effects=_options_and_effects()[1])

