"""Tuned comparisons: each compared option at its own tuned setting, chosen on validation.

A study declares `get_tuning(arg)` returning a Tuning instead of a fixed get_sweep(). Its
runs come in two stages in one sweep dir:

1. tuning: every option at every point of the grid (e.g. the learning rate), on the tuning
   seeds. Each option's setting is the grid point with the best mean final validation
   accuracy; a point where any seed diverged counts as failed. A stage 1 run that failed
   (an error, not a divergence) or is unfinished holds stage 2 back until a rerun
   completes it.
2. comparison: every option at its own chosen setting, on the comparison seeds, which are
   disjoint from the tuning seeds. The seeds come in looks declared in advance (e.g. 5, then
   10, then 20): after each look the paired comparisons are decided (analysis/decide.py),
   and the next look's seeds are added only while a comparison is inconclusive and the
   observed spread says the last look could still decide it.

The stage 2 runs exist only once stage 1 is finished, so `current_sweep` reads the sweep
dir: what it returns grows as the stages complete, and a rerun skips what is done. The
choice and the looks taken are written to tuning.json, which later calls check against.

Caveat of the looks: stopping when the data say so inflates false decisions if every look
is tested at the full level. Every test is therefore made at alpha / len(looks) (Bonferroni
over the looks declared in advance), which bounds the chance of any false decision over all
looks by alpha whatever the stopping rule; the report says so.
"""

import dataclasses
import itertools
import json
import math

import pandas as pd
from etils import epath

from bn_study import errors, records
from bn_study.studies import declare

TUNING_FILE = 'tuning.json'
STAGES = ('all', 'tuning', 'comparison')  # scripts/sweep.py --stage


@dataclasses.dataclass(frozen=True)
class Tuning:
    """A tuned comparison, as a study declares it."""
    options: dict  # option name -> overrides (dotted keys): the compared settings
    grid: dict  # tuned key -> values; every combination is tried for every option
    tuning_seeds: tuple  # stage 1
    comparison_seeds: tuple  # stage 2, in the order looks add them
    looks: tuple = ()  # seed counts at which stage 2 is decided; () = all seeds at once
    # Learning-rate range: the widest run of grid values whose mean validation accuracy is
    # within this of the option's best (accuracy units: 0.01 is one point).
    tolerance: float = 0.01
    # The (a, b) option pairs stage 2 decides, one family; () = every two options. An
    # ablation declares only the pairs it asks about: each the fewer, the more power Holm
    # leaves each.
    pairs: tuple = ()

    def seed_looks(self) -> tuple:
        return tuple(self.looks) or (len(self.comparison_seeds),)

    def to_json(self) -> dict:
        return {'options': self.options, 'grid': {k: list(v) for k, v in self.grid.items()},
                'tuning_seeds': list(self.tuning_seeds),
                'comparison_seeds': list(self.comparison_seeds),
                'looks': list(self.seed_looks()), 'tolerance': self.tolerance,
                # only where declared, so tuning.json files from before still match
                **({'pairs': [list(p) for p in self.pairs]} if self.pairs else {})}

    @classmethod
    def from_json(cls, data: dict) -> 'Tuning':
        return cls(data['options'], {k: tuple(v) for k, v in data['grid'].items()},
                   tuple(data['tuning_seeds']), tuple(data['comparison_seeds']),
                   tuple(data['looks']), data['tolerance'],
                   tuple(tuple(p) for p in data.get('pairs', ())))


def check(tuning: Tuning) -> None:
    """Every refusal of a declaration, one line each, before anything runs."""
    if len(tuning.options) < 2:
        raise errors.ConfigError(f'a tuned comparison needs two or more options; got '
                                 f'{list(tuning.options)}')
    if not tuning.grid or any(len(tuple(values)) == 0 for values in tuning.grid.values()):
        raise errors.ConfigError(f'the tuning grid is empty ({tuning.grid!r}); give each tuned '
                                 'key one or more values, e.g. {"optimizer.learning_rate": '
                                 '(0.025, 0.05, 0.1)}')
    for name, overrides in tuning.options.items():
        shared = sorted(set(overrides) & set(tuning.grid))
        if shared:
            raise errors.ConfigError(f'option {name!r} sets the tuned key {shared[0]!r}; a key '
                                     'is either compared or tuned')
    keys = [k for o in tuning.options.values() for k in o] + list(tuning.grid)
    if 'seed' in keys:
        raise errors.ConfigError('seed is neither compared nor tuned: give tuning_seeds and '
                                 'comparison_seeds')
    for what in ('tuning_seeds', 'comparison_seeds'):
        seeds = tuple(getattr(tuning, what))
        if not seeds or len(set(seeds)) != len(seeds):
            raise errors.ConfigError(f'{what}={seeds!r} must be one or more distinct seeds')
    overlap = sorted(set(tuning.tuning_seeds) & set(tuning.comparison_seeds))
    if overlap:
        raise errors.ConfigError(
            f'comparison seeds overlap tuning seeds ({", ".join(map(str, overlap))}); the '
            'comparison must use seeds the choice was not made on')
    looks = tuning.seed_looks()
    if (looks[0] < 2 or any(a >= b for a, b in zip(looks, looks[1:]))
            or looks[-1] != len(tuning.comparison_seeds)):
        raise errors.ConfigError(
            f'looks={looks!r} must increase from at least 2 seeds to all '
            f'{len(tuning.comparison_seeds)} comparison seeds')
    if not tuning.tolerance > 0:
        raise errors.ConfigError(f'tolerance={tuning.tolerance!r} must be positive')
    for pair in tuning.pairs:
        unknown = [name for name in pair if name not in tuning.options]
        if len(pair) != 2 or pair[0] == pair[1] or unknown:
            raise errors.ConfigError(
                f'pair {pair!r} is not two different options'
                + (f' ({", ".join(map(repr, unknown))} is none)' if unknown else '')
                + f'; the options: {", ".join(tuning.options)}')
    if len(set(map(frozenset, tuning.pairs))) != len(tuning.pairs):
        raise errors.ConfigError('pairs lists a pair twice; decide each pair once')


def grid_points(tuning: Tuning) -> list[dict]:
    keys = list(tuning.grid)
    return [dict(zip(keys, values))
            for values in itertools.product(*(tuple(tuning.grid[k]) for k in keys))]


def point_name(point: dict) -> str:
    return ', '.join(f'{k.split(".")[-1]}={v}' for k, v in point.items())


def tuning_sweep(tuning: Tuning) -> list[dict]:
    """Stage 1's override dicts: option x grid point x tuning seed."""
    return [{**overrides, **point, 'seed': seed}
            for overrides in tuning.options.values() for point in grid_points(tuning)
            for seed in tuning.tuning_seeds]


def comparison_sweep(tuning: Tuning, chosen: dict, seeds: int) -> list[dict]:
    """Stage 2's override dicts: each option with a chosen point, at its own setting, on the
    first `seeds` comparison seeds."""
    return [{**tuning.options[name], **point, 'seed': seed}
            for name, point in chosen.items() if point is not None
            for seed in tuning.comparison_seeds[:seeds]]


def _summary(sweep_dir, overrides: dict):
    return records.read_summary(epath.Path(sweep_dir) / declare.run_name(overrides))


def _finished(summary) -> bool:
    return bool(summary) and summary['status'] in (records.COMPLETE, records.DIVERGED)


def _mean_known(values: list) -> float:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return sum(known) / len(known) if known else math.nan


def tuning_table(tuning: Tuning, sweep_dir) -> pd.DataFrame | None:
    """Per option and grid point: mean final validation accuracy and loss over the tuning
    seeds, and whether the point failed (a seed diverged). None while a stage 1 run is
    unfinished (or failed)."""
    rows = []
    for name, overrides in tuning.options.items():
        for index, point in enumerate(grid_points(tuning)):
            summaries = [_summary(sweep_dir, {**overrides, **point, 'seed': seed})
                         for seed in tuning.tuning_seeds]
            if not all(_finished(s) for s in summaries):
                return None
            failed = any(s['status'] == records.DIVERGED for s in summaries)
            mean = lambda key: (math.nan if failed else
                                sum(s[key] for s in summaries) / len(summaries))
            rows.append({'option': name, 'index': index, 'point': point,
                         'val_accuracy': mean('final_val_accuracy'),
                         'val_loss': mean('final_val_loss'),
                         'initial_val_loss': _mean_known(
                             [s.get('initial_val_loss') for s in summaries]),
                         'failed': failed})
    return pd.DataFrame(rows)


def choose(tuning: Tuning, table: pd.DataFrame) -> dict:
    """option -> its grid point with the best mean validation accuracy (the first in grid
    order on a tie), or None where every point failed."""
    chosen = {}
    for name in tuning.options:
        rows = table[(table['option'] == name) & ~table['failed']]
        if rows.empty:
            chosen[name] = None
            continue
        best = rows.loc[rows['val_accuracy'].idxmax()]  # idxmax: the first of equal maxima
        chosen[name] = dict(best['point'])
    return chosen


def read_state(sweep_dir) -> dict | None:
    path = epath.Path(sweep_dir) / TUNING_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _write_state(sweep_dir, state: dict) -> None:
    # In declaration order, not sorted: an option's overrides in their order name its runs'
    # directories (declare.run_name), and the report finds the runs from this file.
    records.write_text_atomically(epath.Path(sweep_dir) / TUNING_FILE,
                                  json.dumps(state, indent=2, default=list))


def comparison_frame(tuning: Tuning, chosen: dict, sweep_dir, seeds: int,
                     metric: str = 'final_test_accuracy') -> dict[str, pd.Series] | None:
    """option -> `metric` by comparison seed, over the first `seeds` seeds (complete runs
    only; a diverged run has none); None while a run is unfinished."""
    per_option = {}
    for name, point in chosen.items():
        if point is None:
            continue
        values = {}
        for seed in tuning.comparison_seeds[:seeds]:
            summary = _summary(sweep_dir, {**tuning.options[name], **point, 'seed': seed})
            if not _finished(summary):
                return None
            if summary['status'] == records.COMPLETE:
                values[seed] = summary[metric]
        per_option[name] = pd.Series(values, dtype=float)
    return per_option


def decided_pairs(tuning: Tuning) -> list[tuple[str, str]]:
    """The (a, b) pairs stage 2 decides: the declared ones, or every two options (a before
    b in declaration order)."""
    names = list(tuning.options)
    return list(tuning.pairs) or [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


def compared_pairs(tuning: Tuning, per_option: dict) -> list[tuple]:
    """decided_pairs among the options compared (an option diverged at every setting is
    not), as decide.decide takes them."""
    return [(a, per_option[a], b, per_option[b]) for a, b in decided_pairs(tuning)
            if a in per_option and b in per_option]


def check_effects(tuning: Tuning, effects) -> None:
    """Raises ConfigError unless every cell of a report's effects table (report_spec.Effect)
    is a pair stage 2 decides, in the same order."""
    decided = set(decided_pairs(tuning))
    for cell in effects:
        if (cell.a, cell.b) not in decided:
            raise errors.ConfigError(
                f'effect cell ({cell.row}, {cell.column}): the pair ({cell.a!r}, {cell.b!r}) '
                'is not one the tuned comparison decides; declare it in Tuning.pairs')


def _should_extend(tuning: Tuning, per_option: dict, margin: float) -> bool:
    """Another look, if a comparison is inconclusive and the observed spread says the last
    look's seeds could decide it."""
    from bn_study.analysis import decide
    decisions = decide.decide(compared_pairs(tuning, per_option), margin,
                              looks=len(tuning.seed_looks()))
    last = tuning.seed_looks()[-1]
    return any(d.outcome == 'inconclusive' and d.seeds_needed is not None
               and d.seeds_needed <= last for d in decisions)


def current_sweep(tuning: Tuning, sweep_dir, margin: float, stage: str = 'all',
                  record: bool = True) -> list[dict]:
    """The study's runs as far as the sweep dir allows: stage 1, then (once stage 1 is
    finished, unless `stage` is 'tuning') stage 2 up to the current look. Records the choice
    and the looks in tuning.json (record=False, for a dry run: writes nothing); refuses a
    sweep dir whose tuning.json disagrees (records changed under it, or another
    declaration)."""
    check(tuning)
    if not margin > 0:
        raise errors.ConfigError(f'the equivalence margin {margin!r} is not positive')
    if stage not in STAGES:
        raise errors.ConfigError(f'--stage={stage} is no stage; choose one of: '
                                 f'{", ".join(STAGES)}')
    state = read_state(sweep_dir)
    # Before anything is planned: a changed declaration would otherwise train runs that
    # belong to no study in this dir.
    if state is not None and state['tuning'] != json.loads(json.dumps(tuning.to_json())):
        raise errors.WorkdirError(
            f'{sweep_dir}/{TUNING_FILE} records another declaration than the study gives now; '
            'use a new --sweep_dir')
    sweep = tuning_sweep(tuning)
    table = tuning_table(tuning, sweep_dir)
    if table is None:
        if stage == 'comparison':
            raise errors.WorkdirError(
                f'{sweep_dir}: stage 1 (tuning) is not finished, so stage 2 (comparison) '
                'cannot start; run --stage=tuning (or all) first')
        return sweep
    if stage == 'tuning':
        return sweep
    chosen = choose(tuning, table)
    if state is None:
        state = {'tuning': tuning.to_json(), 'chosen': chosen, 'looks_taken': 1}
        if record:
            _write_state(sweep_dir, state)
    elif state['chosen'] != json.loads(json.dumps(chosen, default=list)):
        raise errors.WorkdirError(
            f'{sweep_dir}/{TUNING_FILE} records another choice than the stage 1 records give '
            'now (were they changed?); use a new --sweep_dir')
    looks = tuning.seed_looks()
    taken = state['looks_taken']
    while taken < len(looks):
        per_option = comparison_frame(tuning, chosen, sweep_dir, looks[taken - 1])
        if per_option is None or not _should_extend(tuning, per_option, margin):
            break
        taken += 1
        state['looks_taken'] = taken
        if record:
            _write_state(sweep_dir, state)
    return sweep + comparison_sweep(tuning, chosen, looks[taken - 1])
