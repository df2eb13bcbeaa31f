"""Side-by-side figures: one fresh process per measurement (the device count is fixed when
JAX starts), rounds alternating between them, medians reported, and the ratios the
performance targets are stated in.

Each measurement is `python -m bn_study.perf.child ... --kind=KIND`, printing one line
`FIGURES {json}`; bn_study.perf.timing (the project) and bn_study.perf.torch_peer (PyTorch)
measure. scripts/benchmark.py is its flags and one call to `run`.
"""

import dataclasses
import json
import os
import statistics
import subprocess
import sys

from bn_study import errors
from bn_study.nn import placement

# The module each measurement runs (python -m): bn_study/perf/child.py.
CHILD = 'bn_study.perf.child'
MARKER = 'FIGURES '
# Figures printed per measurement, with their column headings.
COLUMNS = (('train_examples_per_s', 'train ex/s'), ('train_step_ms', 'ms/step'),
           ('train_compile_s', 'compile s'), ('eval_examples_per_s', 'eval ex/s'),
           ('pipeline_examples_per_s', 'input ex/s'), ('peak_rss_mb', 'peak RSS MB'),
           ('device_peak_mb', 'device MB'))


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One child process: what it measures and the flags (of bn_study.perf.child) that make it
    do so."""
    label: str
    kind: str  # project | torch | vmap
    bn_position: str
    devices: int  # simulated CPU devices, or accelerators pmapped over
    flags: tuple[str, ...]


def plan(config, config_spec: str, overrides: tuple[str, ...], devices: list[int],
         no_norm_baseline: bool, torch_peer: bool, vmap_seeds: int,
         common: tuple[str, ...]) -> list[Measurement]:
    """The measurements, each with its child command's flags."""
    positions = [config.model.bn_position]
    if no_norm_baseline and placement.has_norm_layers(config.model):
        positions.append('none')
    base = (f'--config={config_spec}', *overrides, *common)
    measurements = []
    for position in positions:
        placed = (*base, f'--config.model.bn_position={position}')
        for n in devices:
            on_devices = (*placed, f'--config.cpu_devices={n}', f'--config.num_devices={n}')
            measurements.append(Measurement(
                f'bn_study {position}, {n} device{"s" * (n > 1)}', 'project', position, n,
                (*on_devices, '--kind=project')))
        if torch_peer:
            measurements.append(Measurement(f'torch eager {position}', 'torch', position, 0,
                                            (*placed, '--kind=torch')))
    if vmap_seeds:
        n = devices[0]
        measurements.append(Measurement(
            f'{vmap_seeds} seeds, {n} device{"s" * (n > 1)}', 'vmap', config.model.bn_position,
            n, (*base, f'--config.cpu_devices={n}', f'--config.num_devices={n}',
                f'--vmap_seeds={vmap_seeds}', '--kind=vmap')))
    return measurements


def run_child(measurement: Measurement) -> dict:
    """The child's figures, or {'error': its last line of output}."""
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}
    done = subprocess.run([sys.executable, '-m', CHILD, *measurement.flags], env=env,
                          capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    last = (done.stderr.strip().splitlines() or ['no output'])[-1]
    return {'error': f'exit {done.returncode}: {last}'}


def side_by_side(measurements: list[Measurement], rounds: int, run=run_child,
                 progress=print) -> dict[str, list[dict]]:
    """Every measurement once per round, in the same order each round: load on this shared
    machine then falls on all of them alike. Returns each label's figures per round."""
    figures = {m.label: [] for m in measurements}
    for r in range(rounds):
        for m in measurements:
            figures[m.label].append(run(m))
            progress(f'round {r + 1}/{rounds}: {m.label} done')
    return figures


def medians(rounds: list[dict]) -> dict:
    """Median of each numeric figure over the rounds that succeeded; the others' last error."""
    ok = [r for r in rounds if 'error' not in r]
    if not ok:
        return {'error': rounds[-1]['error']}
    merged = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = statistics.median(r[key] for r in ok if key in r)
    merged['rounds'] = len(ok)
    return merged


def table(measurements: list[Measurement], summary: dict[str, dict]) -> list[str]:
    """One row per measurement and one column per figure (- where it does not apply)."""
    width = max(len(m.label) for m in measurements)
    lines = [f'{"":{width}s}' + ''.join(f'{heading:>13s}' for _, heading in COLUMNS)]
    for m in measurements:
        row = summary[m.label]
        if 'error' in row:
            lines.append(f'{m.label:{width}s}  failed: {row["error"]}')
            continue
        if m.kind == 'vmap':
            lines.append(f'{m.label:{width}s}  sequential {row["sequential_examples_per_s"]:.0f}'
                         f' ex/s, vmapped {row["vmapped_examples_per_s"]:.0f} ex/s: '
                         f'{row["vmapped_examples_per_s"] / row["sequential_examples_per_s"]:.2f}x')
            continue
        cells = [f'{row[key]:13.1f}' if key in row else f'{"-":>13s}' for key, _ in COLUMNS]
        lines.append(f'{m.label:{width}s}' + ''.join(cells))
    return lines


def ratios(measurements: list[Measurement], summary: dict[str, dict]) -> dict[str, float]:
    """The ratios the targets are stated in, for every pair that was measured."""
    ok = {m.label: m for m in measurements if 'error' not in summary[m.label]}
    found = {}
    project = [m for m in ok.values() if m.kind == 'project']
    torch = {m.bn_position: m for m in ok.values() if m.kind == 'torch'}
    for m in project:
        row = summary[m.label]
        if m.bn_position in torch:
            peer = summary[torch[m.bn_position].label]
            found[f'{m.label} / torch eager, examples/s'] = (
                row['train_examples_per_s'] / peer['train_examples_per_s'])
        found[f'{m.label}: input pipeline / training step, examples/s'] = (
            row['pipeline_examples_per_s'] / row['train_examples_per_s'])
    baselines = {(m.kind, m.devices): m for m in ok.values() if m.bn_position == 'none'}
    for m in ok.values():
        base = baselines.get((m.kind, m.devices))
        if m.kind != 'vmap' and base and m.bn_position != 'none':
            found[f'{m.label}: step time with norm / without'] = (
                summary[m.label]['train_step_ms'] / summary[base.label]['train_step_ms'])
    return found


def parse_devices(values: list[str]) -> list[int]:
    """--devices as device counts; each a whole number of at least 1."""
    if not values or not all(v.isdigit() and int(v) >= 1 for v in values):
        raise errors.ConfigError(f'--devices={",".join(values)} must list device counts of at '
                                  'least 1, e.g. 1,2')
    return [int(v) for v in values]


def torch_available(config, progress=print) -> bool:
    """Whether the PyTorch peer can measure this config here; if not, says why."""
    from bn_study.perf import torch_peer
    reason = torch_peer.unsupported(config)
    try:
        import torch  # noqa: F401
    except ImportError:
        reason = 'torch is not installed (pip install torch==2.13.0)'
    if reason:
        progress(f'PyTorch peer: none ({reason})')
    return not reason


def run(config, config_spec: str, overrides: tuple[str, ...], devices: list[str], steps: int,
        warmup: int, rounds: int, no_norm_baseline: bool = True, torch_peer: bool = True,
        vmap_seeds: int = 0, json_path: str = '', run_child=run_child) -> dict:
    """The whole benchmark (scripts/benchmark.py): every measurement of `plan` once per round
    in a fresh child process, then the medians, the table and the ratios printed; with
    json_path, every figure written there too. Returns what json_path gets."""
    from bn_study import schema
    from bn_study.training import catalog as training_catalog
    schema.validate(config)
    counts = parse_devices(devices)
    if config.data.name not in training_catalog.DATASETS:
        raise errors.ConfigError(f'config.data.name={config.data.name}: the benchmark needs a '
                                 f'catalogue dataset: {", ".join(training_catalog.DATASETS)}')
    common = (f'--steps={steps}', f'--warmup={warmup}',
              # Cold compiles: the compile figures are then the real ones.
              '--config.compilation_cache_dir=')
    measurements = plan(config, config_spec, overrides, counts, no_norm_baseline,
                        torch_peer and torch_available(config), vmap_seeds, common)
    figures = side_by_side(measurements, rounds, run_child)
    summary = {label: medians(rows) for label, rows in figures.items()}
    first = next((s for s in summary.values() if 'platform' in s and 'device_kind' in s), {})
    print(f'\n{config.model.name} on {config.data.name}, norm={config.norm.kind}, batch '
          f'{config.batch_size}; {first.get("platform", "?")} ({first.get("device_kind", "?")}),'
          f' {len(os.sched_getaffinity(0))} cores; medians of {rounds} rounds of '
          f'{steps} steps')
    print('\n'.join(table(measurements, summary)))
    found = ratios(measurements, summary)
    print('\n'.join(f'{name}: {value:.2f}x' for name, value in found.items()))
    written = {'config': json.loads(config.to_json()), 'rounds': figures, 'medians': summary,
               'ratios': found}
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(written, f, indent=2)
    return written
