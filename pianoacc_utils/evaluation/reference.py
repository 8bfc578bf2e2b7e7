"""The pianist the quality bar measures against: the validation split's, never the split
being judged.

A bar whose thresholds come from the very segments it judges is fitted to them: a
system is then compared with the test split's pianist, and every choice made by looking
at whether it passes is a choice made on test. :func:`pianist_reference` instead
summarises the pianist's accompaniment of the *validation* split's segments (the same
segment length and meter as the evaluation), per metric: median, mean and the 10th and
90th percentiles over segments. :func:`~pianoacc_utils.evaluation.quality_bar` reads its
thresholds from it; ``pianoacc evaluate`` computes it once per setting and keeps it in
``<cache>/quality_reference/``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pianoacc_utils.common import cache_dir, write_json
from pianoacc_utils.evaluation.metrics import METRICS, segment_metrics
from pianoacc_utils.evaluation.runs import EvaluationConfig, split_segments

REFERENCE_SPLIT = "validation"
"""The split whose pianist sets the quality bar's thresholds."""

REFERENCE_SEGMENTS = 96
"""Segments of the reference, evenly spread over the split (as many as the committed
test evaluations judge)."""

PIANIST_PERCENTILES = (10, 90)
"""Percentiles of the pianist's per-segment values that bound the checks of how a system
plays (pitch content, rhythm, voicing): a system's median segment must look like one of
the middle 80% of the pianist's segments."""

REFERENCE_VERSION = 1
"""Bumped when what the reference holds changes (a cached one of another version is
computed again)."""


def reference_config(config: EvaluationConfig = EvaluationConfig()) -> EvaluationConfig:
    """The segments the reference of an evaluation with ``config`` is made of: the
    validation split's, of the evaluation's length and meter."""
    return EvaluationConfig(
        split=REFERENCE_SPLIT,
        bars_per_segment=config.bars_per_segment,
        segments=REFERENCE_SEGMENTS,
        meter=config.meter,
    )


def summarise_pianist(per_segment: Mapping[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per metric: ``median``, ``mean``, ``p10`` and ``p90`` of the finite per-segment
    values (NaN where none is finite)."""
    low, high = PIANIST_PERCENTILES
    summary = {}
    for metric, values in per_segment.items():
        array = np.asarray(values, dtype=np.float64)
        array = array[np.isfinite(array)]
        if len(array) == 0:
            summary[metric] = {k: math.nan for k in ("median", "mean", f"p{low}", f"p{high}")}
            continue
        summary[metric] = {
            "median": float(np.median(array)),
            "mean": float(np.mean(array)),
            f"p{low}": float(np.percentile(array, low)),
            f"p{high}": float(np.percentile(array, high)),
        }
    return summary


def pianist_reference(config: EvaluationConfig = EvaluationConfig()) -> dict[str, Any]:
    """The validation pianist's summary for the quality bar of an evaluation with
    ``config`` (JSON-ready): ``split``, ``segments``, ``bars_per_segment``, ``meter``
    and ``metrics`` (see :func:`summarise_pianist`)."""
    chosen = reference_config(config)
    segments, tempos = split_segments(chosen)
    rows = [segment_metrics(seg, seg.accompaniment, tempo) for seg, tempo in zip(segments, tempos)]
    return {
        "version": REFERENCE_VERSION,
        "split": chosen.split,
        "segments": len(segments),
        "bars_per_segment": chosen.bars_per_segment,
        "meter": chosen.meter,
        "metrics": summarise_pianist({m: [row[m] for row in rows] for m in METRICS}),
    }


def reference_path(config: EvaluationConfig = EvaluationConfig()) -> Path:
    """Where the reference of ``config``'s settings is kept in the cache."""
    chosen = reference_config(config)
    meter = chosen.meter.replace("/", "-")
    name = f"{chosen.split}-{chosen.segments}x{chosen.bars_per_segment}-{meter}.json"
    return cache_dir() / "quality_reference" / name


def load_reference(config: EvaluationConfig = EvaluationConfig()) -> dict[str, Any]:
    """:func:`pianist_reference` for ``config``, from the cache when it holds it."""
    path = reference_path(config)
    if path.is_file():
        try:
            kept = json.loads(path.read_text())
        except ValueError:
            kept = None
        if isinstance(kept, dict) and kept.get("version") == REFERENCE_VERSION:
            return kept
    reference = pianist_reference(config)
    write_json(path, reference)
    return reference

