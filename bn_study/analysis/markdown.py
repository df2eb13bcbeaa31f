"""The report's markdown: numbers and intervals as text, one table form, and a document that
keeps its outline (titles and verdicts) as it is written.

Pure text: nothing here computes a statistic or reads a file.
"""

import math
from collections.abc import Iterable, Sequence

import pandas as pd

from bn_study.analysis import stats


def number(value, digits: int = 4) -> str:
    """`value` to `digits` decimals; '-' for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.{digits}f}'


def interval(value: stats.Interval, digits: int = 4) -> str:
    """'mean [low, high]'; with one value, the mean and that there is no interval."""
    if value.n == 0:
        return '-'
    if value.n < 2:
        return f'{value.mean:.{digits}f} (1 seed, no interval)'
    return f'{value.mean:.{digits}f} [{value.low:.{digits}f}, {value.high:.{digits}f}]'


def points(difference: stats.Interval) -> tuple[str, str]:
    """An accuracy difference in points (x100): its mean and its '[low, high]', 2 decimals."""
    return (number(difference.mean * 100, 2),
            f'[{number(difference.low * 100, 2)}, {number(difference.high * 100, 2)}]')


def table(header: Sequence, rows: Iterable[Sequence]) -> str:
    """A markdown table: the header, its rule, then one line per row (cells as str)."""
    line = lambda cells: '| ' + ' | '.join(map(str, cells)) + ' |'
    return '\n'.join([line(header), '|' + '---|' * len(header), *map(line, rows)])


def frame(data: pd.DataFrame, keys: Iterable[str] = ()) -> str:
    """A table of a DataFrame: intervals as interval(), floats to 4 decimals except in the
    config columns `keys`, which show their values as they are."""
    keys = set(keys)

    def cell(column, value):
        if isinstance(value, stats.Interval):
            return interval(value)
        return number(value) if isinstance(value, float) and column not in keys else str(value)

    return table(list(data.columns), ([cell(c, v) for c, v in zip(data.columns, row)]
                                      for row in data.itertuples(index=False)))


class Document:
    """Markdown blocks (paragraphs, headings, tables, lists), each followed by a blank line;
    the outline collects the titles and verdicts marked for it, in order (what a sweep
    prints at its end)."""

    def __init__(self):
        self.blocks: list[str] = []
        self.outline: list[str] = []

    def paragraph(self, *blocks: str) -> None:
        """Each block, then a blank line."""
        for block in blocks:
            self.blocks.extend((block, ''))

    def heading(self, level: int, text: str, outline: bool = False) -> None:
        self.paragraph(f'{"#" * level} {text}')
        if outline:
            self.outline.append(text)

    def lead(self, label: str, text: str) -> None:
        """A paragraph opening with a bold label ('**Verdict.** ...'); in the outline,
        indented under its title."""
        self.paragraph(f'**{label}.** {text}')
        self.outline.append(f'  {text}')

    def extend(self, other: 'Document') -> None:
        self.blocks.extend(other.blocks)
        self.outline.extend(other.outline)

    def text(self) -> str:
        return '\n'.join(self.blocks)
