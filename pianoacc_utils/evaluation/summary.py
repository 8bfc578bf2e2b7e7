"""Summaries over segments: medians and means with percentile-bootstrap 95% intervals.

Segments differ a lot (a ballad's intro, a dense chorus), so every metric is
reported with the uncertainty of its median and mean over the segments drawn;
:class:`EvaluationResult` holds the per-segment values and summaries of several
systems and writes them as JSON and markdown tables.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError, write_json
from pianoacc_utils.evaluation.metrics import METRICS

GROUND_TRUTH = "ground_truth"
"""System name of the pianist's own accompaniment, evaluated alongside every model."""


# --------------------------------------------------------------------------- aggregation


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[..., Any] = np.median,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` (NaNs dropped first).

    Resamples the values with replacement ``resamples`` times from a generator seeded
    with ``seed`` (so reruns agree); ``statistic`` must accept ``axis=1``.
    Returns (NaN, NaN) for an empty sample.
    """
    sample = np.asarray(values, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if len(sample) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(sample), size=(resamples, len(sample)))
    statistics = statistic(sample[index], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


SUMMARY_FIELDS = ("n", "median", "median_lo", "median_hi", "mean", "mean_lo", "mean_hi")


def summarize(values: Sequence[float], resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """n (finite values), median and mean, each with bootstrap 95% bounds (``median_lo`` ...)."""
    sample = np.asarray(values, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if len(sample) == 0:
        return {name: (0 if name == "n" else math.nan) for name in SUMMARY_FIELDS}
    median_lo, median_hi = bootstrap_ci(sample, np.median, resamples, seed)
    mean_lo, mean_hi = bootstrap_ci(sample, np.mean, resamples, seed)
    return {
        "n": int(len(sample)),
        "median": float(np.median(sample)),
        "median_lo": median_lo,
        "median_hi": median_hi,
        "mean": float(np.mean(sample)),
        "mean_lo": mean_lo,
        "mean_hi": mean_hi,
    }


def _to_json_ready(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _to_json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _from_json_ready(value: Any) -> Any:
    """Inverse of :func:`_to_json_ready` for results: ``None`` -> NaN."""
    if isinstance(value, dict):
        return {k: _from_json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_ready(v) for v in value]
    return math.nan if value is None else value


RESULT_FIELDS = ("systems", "metrics", "segments", "per_segment", "summary", "overlap", "settings")


@dataclass
class EvaluationResult:
    """Per-segment metrics and their summaries for several systems on the same segments.

    ``per_segment[system][metric]`` lists one value per segment (NaN where undefined);
    ``summary[system][metric]`` holds ``n``, ``median``, ``mean`` and their bootstrap
    95% bounds (``median_lo`` ...); ``overlap[system][feature]`` is the overlapping
    area of the system's distribution of a texture metric (or of pooled note pitches
    and velocities) with the ground truth's; ``segments`` identifies the segments
    (song id, first bar, bars, transposition, seconds per beat).
    """

    systems: list[str]
    metrics: list[str]
    segments: list[dict[str, Any]]
    per_segment: dict[str, dict[str, list[float]]]
    summary: dict[str, dict[str, dict[str, float]]]
    overlap: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content (NaN written as ``null``)."""
        return _to_json_ready({name: getattr(self, name) for name in RESULT_FIELDS})

    def to_json(self, path: str | Path) -> None:
        """Write the result as JSON, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> EvaluationResult:
        """Read a result written by :meth:`to_json` (``null`` back to NaN)."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise PianoaccError(f"{path}: not a readable evaluation result ({error})") from error
        missing = [name for name in RESULT_FIELDS if name not in payload]
        if not isinstance(payload, dict) or missing:
            raise PianoaccError(f"{path}: not an evaluation result (missing {', '.join(missing)})")
        return cls(**{name: _from_json_ready(payload[name]) for name in RESULT_FIELDS})

    def to_markdown(self, statistic: str = "median") -> str:
        """Tables: metrics as rows, systems as columns, cells "median [lo, hi]".

        ``statistic`` is ``"median"`` or ``"mean"`` (95% bootstrap interval in
        brackets). A second table gives the overlapping areas with the ground truth.
        """
        if statistic not in ("median", "mean"):
            raise PianoaccError(f"statistic must be 'median' or 'mean', got {statistic!r}")
        lines = [
            f"| metric ({statistic} [95% CI]) | unit | " + " | ".join(self.systems) + " |",
            "|---|---|" + "---|" * len(self.systems),
        ]
        units = {**METRICS, **self.settings.get("units", {})}
        for metric in self.metrics:
            cells = [_format_cell(self.summary[s][metric], statistic) for s in self.systems]
            lines.append(f"| {metric} | {units.get(metric, '')} | " + " | ".join(cells) + " |")
        features = list(next(iter(self.overlap.values()), {}))
        if features:
            lines += [
                "",
                "| overlapping area with ground truth | " + " | ".join(self.systems) + " |",
                "|---|" + "---|" * len(self.systems),
            ]
            for feature in features:
                cells = [_format_number(self.overlap[s][feature]) for s in self.systems]
                lines.append(f"| {feature} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _format_number(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _format_cell(row: dict[str, float], statistic: str) -> str:
    value = row[statistic]
    if value is None or not math.isfinite(value):
        return "n/a"
    low, high = row[f"{statistic}_lo"], row[f"{statistic}_hi"]
    return f"{_format_number(value)} [{_format_number(low)}, {_format_number(high)}]"
