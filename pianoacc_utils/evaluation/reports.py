"""What ``pianoacc evaluate`` reports: the quality bar and the report dict around it.

:func:`quality_bar` checks a model against the ground truth of the same segments,
criterion by criterion; :func:`evaluation_report` gathers the metric summaries,
teacher-forced metrics, quality bars and melody results into one JSON-ready dict
(the content of ``results/evaluation.json``); :func:`report_result` reads it back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.evaluation.melodies import evaluate_melodies
from pianoacc_utils.evaluation.runs import EvaluationConfig, evaluate_checkpoints
from pianoacc_utils.evaluation.summary import (
    GROUND_TRUTH,
    RESULT_FIELDS,
    EvaluationResult,
    _from_json_ready,
    _to_json_ready,
)

MEAN_METRICS = ("key_agreement", "silent_bar_share")
"""Metrics judged by their mean over segments: 0/1 (key) or mostly 0 (silent bars) per
segment, so their median says little."""

COMPARISON_GROUPS = {
    "Timing": ("grid_share", "melody_beat_coverage", "bars_off_share"),
    "Harmony": ("chord_tone_ratio", "melody_consonance", "key_agreement"),
    "Coverage": ("silent_bar_share", "ending_offset_bars"),
    "Texture": ("notes_per_bar", "polyphony", "pitch_range"),
}
"""The metrics :func:`compare_models` quotes, by aspect."""

# --------------------------------------------------------------------------- quality bar


def _check(criterion: str, value: float, threshold: Any, passed: bool) -> dict[str, Any]:
    return {"criterion": criterion, "value": value, "threshold": threshold, "passed": bool(passed)}


def quality_bar(result: EvaluationResult, system: str = "fnet") -> list[dict[str, Any]]:
    """Check a system against the ground truth of the same segments.

    Each row is ``{criterion, value, threshold, passed}``; ``threshold`` is a number
    or a ``[low, high]`` range. Medians over segments are compared, except for key
    agreement (0/1 per segment) and silent bars (mostly 0 per segment), whose means
    are compared: the share of segments in the key, the mean share of silent bars.
    A NaN value fails.
    """
    for name in (system, GROUND_TRUTH):
        if name not in result.summary:
            have = ", ".join(result.systems)
            raise PianoaccError(f"no system {name!r} in the evaluation result (has: {have})")

    def ours(metric: str, statistic: str = "median") -> float:
        return float(result.summary[system][metric][statistic])

    def truth(metric: str, statistic: str = "median") -> float:
        return float(result.summary[GROUND_TRUTH][metric][statistic])

    def at_least(metric: str, factor: float, statistic: str = "median") -> dict[str, Any]:
        value, threshold = ours(metric, statistic), factor * truth(metric, statistic)
        criterion = f"{metric} {statistic} >= {factor:g} x ground truth"
        return _check(criterion, value, threshold, value >= threshold)

    def at_most(metric: str, limit: float, statistic: str = "median") -> dict[str, Any]:
        value = ours(metric, statistic)
        return _check(f"{metric} {statistic} <= {limit:g}", value, limit, value <= limit)

    offset = ours("median_bar_offset")
    density = ours("notes_per_bar")
    band = [0.5 * truth("notes_per_bar"), 2.0 * truth("notes_per_bar")]
    spread, spread_floor = ours("velocity_std"), 0.3 * truth("velocity_std")
    return [
        at_least("grid_share", 0.9),
        at_least("melody_beat_coverage", 0.9),
        _check("median_bar_offset median == 0 beats", offset, 0.0, offset == 0),
        at_most("bars_off_share", 0.15),
        at_least("chord_tone_ratio", 0.95),
        at_least("melody_consonance", 0.95),
        at_least("key_agreement", 0.9, "mean"),
        at_most("silent_bar_share", 0.05, "mean"),
        at_most("ending_offset_bars", 1.0),
        _check(
            "notes_per_bar median within [0.5, 2] x ground truth",
            density,
            band,
            band[0] <= density <= band[1],
        ),
        at_least("pitch_range", 0.5),
        _check(
            "velocity_std median > 0 and >= 0.3 x ground truth",
            spread,
            spread_floor,
            spread > 0 and spread >= spread_floor,
        ),
    ]


def evaluation_report(
    checkpoints: Sequence[str | Path],
    config: EvaluationConfig = EvaluationConfig(),
    melody_paths: Sequence[str | Path] = (),
    progress: bool = False,
    teacher_forced: bool = True,
) -> dict[str, Any]:
    """Everything ``pianoacc evaluate`` reports, as one JSON-ready dict.

    ``summary``: :meth:`EvaluationResult.to_dict` of :func:`evaluate_checkpoints`;
    ``details``: its teacher-forced metrics, generation times and settings;
    ``quality_bar``: :func:`quality_bar` rows per model; and, when ``melody_paths``
    are given, ``melodies``: :func:`evaluate_melodies` per model, sampling as ``config``.
    :func:`report_result` turns ``summary`` back into an :class:`EvaluationResult`.
    ``teacher_forced=False`` leaves the teacher-forced metrics out (``None``).
    """
    result, details = evaluate_checkpoints(
        checkpoints, config, progress=progress, teacher_forced=teacher_forced
    )
    bars = {name: quality_bar(result, system=name) for name in details["models"]}
    report: dict[str, Any] = {"summary": result.to_dict(), "details": details, "quality_bar": bars}
    if melody_paths:
        sampling = config.sampling()
        melody_chords = "none" if config.chords == "none" else "estimated"
        report["melodies"] = {
            name: evaluate_melodies(
                info["checkpoint"],
                melody_paths,
                sampling,
                chords=melody_chords,
                release=config.release,
                hanging_beats=config.hanging_beats,
                compound=config.compound,
            )
            for name, info in details["models"].items()
        }
    return _to_json_ready(report)


def report_result(report: Mapping[str, Any]) -> EvaluationResult:
    """The :class:`EvaluationResult` inside a report of :func:`evaluation_report`
    (or a ``pianoacc evaluate --json`` file's content); ``null`` back to NaN."""
    summary = report.get("summary") if isinstance(report, Mapping) else None
    if not isinstance(summary, Mapping):
        summary = {}
    missing = [name for name in RESULT_FIELDS if name not in summary]
    if missing:
        raise PianoaccError(f"not an evaluation report (summary lacks {', '.join(missing)})")
    return EvaluationResult(**{name: _from_json_ready(summary[name]) for name in RESULT_FIELDS})


# --------------------------------------------------------------------------- comparison in words


def _number(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"


def compare_models(
    report: Mapping[str, Any],
    first: str = "fnet",
    second: str = "transformer",
    statistic: str = "median",
) -> str:
    """Markdown bullets comparing two models of an :func:`evaluation_report` with the pianist.

    Counts the metrics on which each model is closer to the ground truth (its
    ``statistic``, the mean for :data:`MEAN_METRICS`), quotes the metrics of
    :data:`COMPARISON_GROUPS`, the quality bar, and the teacher-forced perplexity
    when the report has it. Written from the numbers, so it follows the results.
    """
    result = report_result(report)
    for name in (first, second):
        if name not in result.summary:
            have = ", ".join(result.systems)
            return f"Only {have} in these results: the comparison needs both models."

    def value(system: str, metric: str) -> float:
        return result.summary[system][metric]["mean" if metric in MEAN_METRICS else statistic]

    def gap(system: str, metric: str) -> float:
        return abs(value(system, metric) - value(GROUND_TRUTH, metric))

    compared = [m for m in result.metrics if math.isfinite(gap(first, m) + gap(second, m))]
    closer = [m for m in compared if gap(first, m) < gap(second, m)]
    further = [m for m in compared if gap(first, m) > gap(second, m)]
    lines = [
        f"- **Closeness to the pianist.** {first} is closer to the ground truth than {second} on "
        f"{len(closer)} of {len(compared)} metrics ({', '.join(closer) or 'none'}), further on "
        f"{len(further)} ({', '.join(further) or 'none'}), level on the rest."
    ]
    for group, metrics in COMPARISON_GROUPS.items():
        parts = [
            f"{m} {_number(value(first, m))} vs {_number(value(second, m))}, "
            f"pianist {_number(value(GROUND_TRUTH, m))}"
            for m in metrics
            if m in result.metrics
        ]
        lines.append(f"- **{group}** ({first} vs {second}). " + "; ".join(parts) + ".")
    bars = report.get("quality_bar", {})
    if first in bars and second in bars:
        passed = {n: sum(row["passed"] for row in bars[n]) for n in (first, second)}
        lines.append(
            f"- **Quality bar.** {first} passes {passed[first]} of {len(bars[first])} checks, "
            f"{second} {passed[second]} of {len(bars[second])}."
        )
    models = report.get("details", {}).get("models", {})
    forced = {n: models.get(n, {}).get("teacher_forced") for n in (first, second)}
    if all(forced.values()):
        lines.append(
            f"- **Teacher forcing.** Perplexity {_number(forced[first]['perplexity'])} vs "
            f"{_number(forced[second]['perplexity'])}, token accuracy "
            f"{_number(forced[first]['accuracy'])} vs {_number(forced[second]['accuracy'])}."
        )
    return "\n".join(lines)
