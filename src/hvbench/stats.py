"""Statistics over raw samples: per platform, workload and metric.

The median of an even number of samples is the mean of the two middle values
(numpy's definition), unlike tools that pick the wrong elements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .store import SampleRow


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    median: float
    stdev: float
    cv: float  # coefficient of variation: stdev / mean (0 when n < 2)
    minimum: float
    maximum: float


def summarize(values: Iterable[float]) -> Summary:
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        raise ValueError("no values to summarize")
    mean = float(np.mean(data))
    stdev = float(np.std(data, ddof=1)) if data.size > 1 else 0.0
    return Summary(
        n=int(data.size), mean=mean, median=float(np.median(data)), stdev=stdev,
        cv=stdev / mean if mean else 0.0, minimum=float(np.min(data)),
        maximum=float(np.max(data)),
    )


@dataclass(frozen=True)
class Series:
    """All samples of one metric of one workload on one platform."""

    platform: str
    workload: str
    metric: str
    unit: str
    higher_is_better: bool
    values: tuple[float, ...]


def group(rows: Iterable[SampleRow]) -> list[Series]:
    """Group sample rows into series, keeping first-seen order."""
    buckets: dict[tuple[str, str, str], list[SampleRow]] = defaultdict(list)
    for row in rows:
        buckets[(row.workload, row.metric, row.platform)].append(row)
    return [
        Series(platform, workload, metric, items[0].unit, items[0].higher_is_better,
               tuple(r.value for r in items))
        for (workload, metric, platform), items in buckets.items()
    ]
