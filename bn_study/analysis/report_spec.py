"""What a study's report compares: the config key whose values it ranks, and the published
orderings it checks the measured runs against (REFERENCES.md holds the sources).

A study config declares them in `get_report(arg)`; the sweep stores them in sweep.json,
so `scripts/report.py` needs nothing but the sweep dir. Light: study configs import it.
"""

import dataclasses

from bn_study import errors

# beats: better > worse; no_worse: better >= worse, refuted only by an interval entirely
# below zero, and "consistent" (not confirmed) when the interval contains zero.
KINDS = ('beats', 'no_worse')
# A side's key naming an evaluation kind (training.catalog.EVAL_STATS), not a config key.
EVAL = 'eval'
NEVER_POOLED = ('data.name', 'model.name')  # runs on different ones are never compared


@dataclasses.dataclass(frozen=True)
class Claim:
    """A published ordering: the configuration `better` over `worse` in final test accuracy.

    Each side is a dict of config values (dotted keys) picking its runs; the key 'eval'
    instead picks the evaluation kind whose accuracy counts (test_accuracy_<kind>), so two
    sides may be the same runs evaluated two ways. `where` holds values both sides share.
    """
    source: str  # where it was published, e.g. 'He et al. 2016, Table 2'
    published: str  # the published numbers, e.g. 'error 6.61% vs 8.17% (ResNet-110)'
    better: dict
    worse: dict
    kind: str = 'beats'
    where: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise errors.ConfigError(f'claim kind {self.kind!r} is not valid; choose one of: '
                                      f'{", ".join(KINDS)}')

    def describe(self) -> str:
        relation = 'beats' if self.kind == 'beats' else 'is no worse than'
        return f'{side_name(self.better)} {relation} {side_name(self.worse)}'


@dataclasses.dataclass(frozen=True)
class Effect:
    """One cell of a tuned study's effects table: the decided pair of options `a`, which has
    what `row` names (e.g. layer conv1's norm), and `b`, the same without it; a - b is the
    effect, shown in `column` (e.g. the preset the norm was removed from)."""
    row: str
    column: str
    a: str
    b: str


# The equivalence margin a report uses unless its study declares one: 0.5 points of accuracy.
DEFAULT_MARGIN = 0.005


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    """How a study's report reads its runs."""
    compare: str = 'model.bn_position'  # the key whose values are ranked and paired
    claims: tuple[Claim, ...] = ()
    # δ, in accuracy (0.005 = 0.5 points): two options whose paired difference is shown to
    # lie within ±δ (TOST) are "equivalent within ±δ"; declared before the runs are seen.
    margin: float = DEFAULT_MARGIN
    # A tuned study's effects table (analysis/effects.py), whose rows the Answer then reads
    # out: e.g. per layer, its norm's effect in each place. Each cell's pair must be one the
    # study's Tuning decides.
    effects: tuple[Effect, ...] = ()

    def __post_init__(self):
        if not (isinstance(self.margin, (int, float)) and self.margin > 0):
            raise errors.ConfigError(f'the equivalence margin {self.margin!r} is not positive; '
                                     'declare margin > 0 in accuracy units (0.005 is 0.5 '
                                     'points)')

    def to_json(self) -> dict:
        return {'compare': self.compare, 'claims': [dataclasses.asdict(c) for c in self.claims],
                'margin': self.margin,
                **({'effects': [dataclasses.asdict(e) for e in self.effects]}
                   if self.effects else {})}

    @classmethod
    def from_json(cls, data: dict | None) -> 'ReportSpec':
        if not data:
            return cls()
        # sweep.json files written before issue 16 hold no margin: they get the default
        # a study declares when it says nothing (the field's own default).
        return cls(data['compare'], tuple(Claim(**c) for c in data['claims']),
                   data.get('margin', DEFAULT_MARGIN),
                   tuple(Effect(**e) for e in data.get('effects', ())))


def side_name(side: dict) -> str:
    return ', '.join(f'{k.split(".")[-1]}={v}' for k, v in side.items()) or 'all'
