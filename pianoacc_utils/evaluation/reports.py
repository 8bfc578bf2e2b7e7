"""What ``pianoacc evaluate`` reports: the quality bar and the report dict around it.

:func:`quality_bar` checks a model against the ground truth of the same segments,
criterion by criterion; :func:`evaluation_report` gathers the metric summaries,
teacher-forced metrics, quality bars and melody results into one JSON-ready dict
(the content of ``results/evaluation.json``), with every sampling seed summarised by
:func:`seed_summary`; :func:`report_result` reads it back and :func:`report_markdown`
writes it as tables.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.evaluation.copying import COPY_METRICS
from pianoacc_utils.evaluation.critic import critic_markdown, critic_row
from pianoacc_utils.evaluation.melodies import evaluate_melodies
from pianoacc_utils.generation.rerank import Reranker
from pianoacc_utils.evaluation.metrics import METRICS
from pianoacc_utils.evaluation.reference import PIANIST_PERCENTILES, load_reference
from pianoacc_utils.evaluation.runs import EvaluationConfig, evaluate_checkpoints
from pianoacc_utils.evaluation.summary import (
    GROUND_TRUTH,
    RESULT_FIELDS,
    EvaluationResult,
    _from_json_ready,
    _to_json_ready,
)

MEAN_METRICS = ("key_agreement", "silent_bar_share", *COPY_METRICS)
"""Metrics judged by their mean over segments: 0/1 (key) or mostly 0 (silent bars, the
copy figures) per segment, so their median says little."""

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


def quality_bar(
    result: EvaluationResult, system: str = "fnet", reference: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Check a system against a pianist's accompaniment.

    ``reference``: the pianist who sets the thresholds, as
    :func:`~pianoacc_utils.evaluation.reference.pianist_reference` summarises the
    validation split's (what ``pianoacc evaluate`` uses, so that no threshold is fitted
    to the segments it judges); ``None``: the ground truth of the same segments (for
    hand-made results and controls).

    Each row is ``{criterion, value, threshold, passed}``; ``threshold`` is a number
    or a ``[low, high]`` range. Medians over segments are compared, except for key
    agreement (0/1 per segment) and silent bars (mostly 0 per segment), whose means
    are compared: the share of segments in the key, the mean share of silent bars.
    The checks of how a system plays (:mod:`~pianoacc_utils.evaluation.pianism`) compare
    its median with the 10th and 90th percentiles of the pianist's per-segment values
    (:data:`PIANIST_PERCENTILES`), on the side that marks a fault. A NaN value fails.
    """
    for name in (system, GROUND_TRUTH):
        if name not in result.summary:
            have = ", ".join(result.systems)
            raise PianoaccError(f"no system {name!r} in the evaluation result (has: {have})")
    missing = [m for m in METRICS if m not in result.summary[system]]
    if missing:
        raise PianoaccError(
            f"the evaluation result lacks {', '.join(missing)}: it was written before these "
            "metrics existed; run pianoacc evaluate again"
        )

    def ours(metric: str, statistic: str = "median") -> float:
        return float(result.summary[system][metric][statistic])

    def truth(metric: str, statistic: str = "median") -> float:
        if reference is not None:
            return float(reference["metrics"][metric][statistic])
        return float(result.summary[GROUND_TRUTH][metric][statistic])

    def at_least(metric: str, factor: float, statistic: str = "median") -> dict[str, Any]:
        value, threshold = ours(metric, statistic), factor * truth(metric, statistic)
        criterion = f"{metric} {statistic} >= {factor:g} x ground truth"
        return _check(criterion, value, threshold, value >= threshold)

    def at_most(metric: str, limit: float, statistic: str = "median") -> dict[str, Any]:
        value = ours(metric, statistic)
        return _check(f"{metric} {statistic} <= {limit:g}", value, limit, value <= limit)

    def pianist(metric: str, percentile: float) -> float:
        if reference is not None:
            return float(reference["metrics"][metric][f"p{percentile:g}"])
        values = np.asarray(result.per_segment[GROUND_TRUTH][metric], dtype=np.float64)
        values = values[np.isfinite(values)]
        return float(np.percentile(values, percentile)) if len(values) else math.nan

    low, high = PIANIST_PERCENTILES

    def pianist_range(metric: str, lower: bool = True, upper: bool = True) -> dict[str, Any]:
        value, bounds = ours(metric), [pianist(metric, low), pianist(metric, high)]
        if lower and upper:
            criterion = f"{metric} median within the pianist's {low}th-{high}th percentiles"
            return _check(criterion, value, bounds, bounds[0] <= value <= bounds[1])
        if lower:
            criterion = f"{metric} median >= the pianist's {low}th percentile"
            return _check(criterion, value, bounds[0], value >= bounds[0])
        criterion = f"{metric} median <= the pianist's {high}th percentile"
        return _check(criterion, value, bounds[1], value <= bounds[1])

    offset = ours("median_bar_offset")
    density = ours("notes_per_bar")
    band = [0.5 * truth("notes_per_bar"), 2.0 * truth("notes_per_bar")]
    spread, spread_floor = ours("velocity_std"), 0.3 * truth("velocity_std")
    duration = ours("median_duration")
    duration_band = [0.5 * truth("median_duration"), 2.0 * truth("median_duration")]
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
        pianist_range("harmonic_motion", upper=False),
        pianist_range("harmonic_variety", upper=False),
        pianist_range("rhythm_distance", lower=False),
        pianist_range("onset_repetition", lower=False),
        pianist_range("strong_beat_bass", upper=False),
        pianist_range("voicing_spread"),
        _check(
            "median_duration median within [0.5, 2] x ground truth",
            duration,
            duration_band,
            duration_band[0] <= duration <= duration_band[1],
        ),
    ]


def _bar_systems(result: EvaluationResult, details: Mapping[str, Any]) -> list[str]:
    """Systems held to the quality bar: the models, and the block-chord baseline (the
    rule that the bar must fail) when it was run."""
    return [*details["models"], *(["block_chords"] if "block_chords" in result.systems else [])]


def seed_statistic(metric: str, unit: str) -> str:
    """The statistic over segments that stands for a metric across seeds: the mean for
    0/1-per-segment metrics and :data:`MEAN_METRICS`, else the median."""
    return "mean" if metric in MEAN_METRICS or unit == "0/1 per segment" else "median"


def seed_summary(
    runs: Mapping[int, tuple[EvaluationResult, Mapping[str, list[dict[str, Any]]]]],
) -> dict[str, Any]:
    """Several sampling seeds side by side: ``runs`` maps a seed to its result and its
    quality-bar rows per system.

    Per system and metric: ``per_seed`` (the metric's statistic over segments,
    :func:`seed_statistic`, one value per seed, in seed order), ``median`` (their
    median) and ``spread`` ([min, max] across seeds); ``quality_bar``: per system and
    seed, the checks passed and the criteria failed.
    """
    seeds = list(runs)
    first = runs[seeds[0]][0]
    units = {**METRICS, **first.settings.get("units", {})}
    statistic = {m: seed_statistic(m, units.get(m, "")) for m in first.metrics}
    per_seed = {
        system: {
            m: [float(runs[seed][0].summary[system][m][statistic[m]]) for seed in seeds]
            for m in first.metrics
        }
        for system in first.systems
    }

    def finite(values: list[float]) -> np.ndarray:
        array = np.asarray(values, dtype=np.float64)
        return array[np.isfinite(array)]

    def middle(values: list[float]) -> float:
        return float(np.median(finite(values))) if len(finite(values)) else math.nan

    def extremes(values: list[float]) -> list[float]:
        kept = finite(values)
        return [float(kept.min()), float(kept.max())] if len(kept) else [math.nan, math.nan]

    median = {system: {m: middle(v) for m, v in rows.items()} for system, rows in per_seed.items()}
    spread = {system: {m: extremes(v) for m, v in rows.items()} for system, rows in per_seed.items()}
    bars = {
        system: [
            {
                "seed": seed,
                "passed": sum(row["passed"] for row in runs[seed][1][system]),
                "checks": len(runs[seed][1][system]),
                "failed": [row["criterion"] for row in runs[seed][1][system] if not row["passed"]],
            }
            for seed in seeds
        ]
        for system in runs[seeds[0]][1]
    }
    return {
        "seeds": seeds,
        "statistic": statistic,
        "per_seed": per_seed,
        "median": median,
        "spread": spread,
        "quality_bar": bars,
    }


def evaluation_report(
    checkpoints: Sequence[str | Path],
    config: EvaluationConfig = EvaluationConfig(),
    melody_paths: Sequence[str | Path] = (),
    progress: bool = False,
    teacher_forced: bool = True,
) -> dict[str, Any]:
    """Everything ``pianoacc evaluate`` reports, as one JSON-ready dict.

    The models are evaluated at every seed of ``config.seeds`` (or at ``config.seed``
    alone). ``summary``: :meth:`EvaluationResult.to_dict` of :func:`evaluate_checkpoints`
    at the first seed; ``details``: its teacher-forced metrics, generation times and
    settings; ``quality_bar``: its :func:`quality_bar` rows per model (and for the
    block-chord baseline); ``seeds``: :func:`seed_summary` of all seeds; and, when
    ``melody_paths`` are given, ``melodies``: :func:`evaluate_melodies` per model,
    sampling as ``config`` at the first seed. :func:`report_result` turns ``summary``
    back into an :class:`EvaluationResult`. ``teacher_forced=False`` leaves the
    teacher-forced metrics out (``None``); they do not depend on the seed and are
    computed at the first one only, as is the critic (``details["critic"]``).
    """
    seeds = list(dict.fromkeys(config.seeds)) or [config.seed]
    reference = load_reference(config)
    runs: dict[int, tuple[EvaluationResult, dict[str, list[dict[str, Any]]]]] = {}
    details: dict[str, Any] = {}
    for position, seed in enumerate(seeds):
        run_config = replace(config, seed=seed, critic=config.critic and position == 0)
        result, run_details = evaluate_checkpoints(
            checkpoints, run_config, progress=progress,
            teacher_forced=teacher_forced and position == 0,
        )
        systems = _bar_systems(result, run_details)
        bars = {name: quality_bar(result, name, reference) for name in systems}
        runs[seed] = (result, bars)
        details = run_details if position == 0 else details
        for name, info in run_details["models"].items():
            seconds = details["models"][name].setdefault("seed_generation_seconds", {})
            seconds[str(seed)] = info["generation_seconds"]
    result, bars = runs[seeds[0]]
    report: dict[str, Any] = {
        "summary": result.to_dict(),
        "details": details,
        "quality_bar": bars,
        "quality_reference": reference,
        "seeds": seed_summary(runs),
    }
    if melody_paths:
        sampling = replace(config, seed=seeds[0]).sampling()
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
                candidates=config.candidates,
                overlap_bars=config.overlap_bars,
                reranker=None if config.reranker is None
                else Reranker.load(config.reranker),
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


def report_markdown(report: Mapping[str, Any]) -> str:
    """The tables of a report of :func:`evaluation_report`: the metrics at the first seed
    (:meth:`EvaluationResult.to_markdown`) with the critic's accuracy per system when it
    ran, the quality bar per system and seed, for several seeds each metric's median over
    seeds with its [min, max] spread, and the critic's comparisons and the features that
    give each model away (:func:`~pianoacc_utils.evaluation.critic.critic_markdown`)."""
    result = report_result(report)
    parts = [result.to_markdown()]
    critic = (report.get("details") or {}).get("critic") or {}
    if "systems" in critic:
        parts.append(
            f"| critic ([95% CI], {critic['settings']['config']['folds']} folds by song) | "
            "unit | " + " | ".join(result.systems) + " |\n"
            "|---|---|" + "---|" * len(result.systems) + "\n"
            + critic_row(critic, result.systems) + "\n"
        )
    seeds = report.get("seeds") or {}
    bar_rows = seeds.get("quality_bar") or {
        name: [{"seed": None, "passed": sum(r["passed"] for r in rows), "checks": len(rows),
                "failed": [r["criterion"] for r in rows if not r["passed"]]}]
        for name, rows in report.get("quality_bar", {}).items()
    }
    if bar_rows:
        lines = ["| quality bar | seed | checks passed | failed |", "|---|---|---|---|"]
        for name, rows in bar_rows.items():
            for row in rows:
                seed = "" if row["seed"] is None else row["seed"]
                failed = "; ".join(row["failed"]) or "none"
                lines.append(f"| {name} | {seed} | {row['passed']}/{row['checks']} | {failed} |")
        parts.append("\n".join(lines) + "\n")
    if len(seeds.get("seeds", [])) > 1:
        systems = list(seeds["median"])
        units = {**METRICS, **result.settings.get("units", {})}
        lines = [
            (
                f"| metric over seeds {', '.join(map(str, seeds['seeds']))}: median [min, max] | "
                "statistic | unit | " + " | ".join(systems) + " |"
            ),
            "|---|---|---|" + "---|" * len(systems),
        ]
        for metric, statistic in seeds["statistic"].items():
            cells = []
            for system in systems:
                low, high = seeds["spread"][system][metric]
                middle = seeds["median"][system][metric]
                cells.append(f"{_number(middle)} [{_number(low)}, {_number(high)}]")
            unit = units.get(metric, "")
            lines.append(f"| {metric} | {statistic} | {unit} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    if "systems" in critic:
        parts.append(critic_markdown(critic, features_of=list(critic["systems"])))
    elif "skipped" in critic:
        parts.append(f"Critic: skipped ({critic['skipped']}).\n")
    return "\n".join(parts)


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
