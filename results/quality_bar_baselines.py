"""The quality bar's checks of how a system plays: the pianist, block chords, the shipped FNet.

    python results/quality_bar_baselines.py baselines
    python results/quality_bar_baselines.py fnet [SEGMENTS]
    python results/quality_bar_baselines.py --table

``baselines`` evaluates, on the 96 test segments of ``pianoacc evaluate`` (32 bars
each), the ground truth, the block-chord baseline and *other song* (the first segment
of the next test song's accompaniment, cut to the segment: a real pianist playing the
wrong song), with the copy check against the train split, and runs the quality bar on
the two baselines. No model is needed (a few minutes on 2 CPU cores, the copy index
included). ``fnet`` runs the shipped FNet on SEGMENTS (default 8) test segments at
sampling seeds 0 and 1 (default generation, annotated chords) through
``evaluation.evaluation_report`` without teacher-forced metrics. Both store their
numbers in results/quality_bar_baselines.json; ``--table`` writes
results/quality_bar_baselines.md from that file, with the key agreement of the
committed runs at seeds 0, 1 and 2 (results/evaluation.json, ``seeds``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from pianoacc_utils import evaluation
from pianoacc_utils.common import write_atomic, write_json
from pianoacc_utils.data import Note, Segment

DECIDES_ON = None
"""The split this script chooses on (reports the baselines against the bar), ``None`` where it
chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test split."""

OUT = Path("results/quality_bar_baselines")
NEW_METRICS = [*evaluation.PIANISM_METRICS, *evaluation.COPY_METRICS]
SEED_RUNS = Path("results/evaluation.json")
"""The committed evaluation at several sampling seeds (``pianoacc evaluate --seeds``)."""

json_path = OUT.with_suffix(".json")
stored = json.loads(json_path.read_text()) if json_path.exists() else {}


def percentiles(values: list[float]) -> list[float]:
    """[10th percentile, median, 90th percentile, mean, max] of the finite values."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return [math.nan] * 5
    low, middle, high = np.percentile(finite, [10, 50, 90]).tolist()
    return [low, middle, high, float(finite.mean()), float(finite.max())]


def cell(metric: str, v: list[float]) -> str:
    """Copy figures (mostly 0) as mean and max, the others as median [10th, 90th percentile]."""
    if metric in evaluation.COPY_METRICS:
        return f"mean {number(v[3])}, max {number(v[4])}"
    return f"{number(v[1])} [{number(v[0])}, {number(v[2])}]"


def train_songs(index: evaluation.CopyIndex, seg: Segment) -> list[str]:
    """The train songs holding one of the 2-bar windows of the segment's own accompaniment."""
    bounds = [*seg.bar_starts, seg.num_steps]
    found = set()
    for window in evaluation.bar_windows(seg.accompaniment, bounds, 2):
        if window is not None:
            found.update(index.songs[row[0]] for row in index.lookup(2, window[1]))
    return sorted(found)


def baselines() -> dict:
    segments, tempos = evaluation.split_segments(evaluation.EvaluationConfig(segments=96))
    first = {}
    for seg in segments:
        first.setdefault(seg.song_id, seg)
    songs = list(first)

    def other_song(seg: Segment) -> list[Note]:
        other = first[songs[(songs.index(seg.song_id) + 1) % len(songs)]]
        return [n for n in other.accompaniment if n.start < seg.num_steps]

    index = evaluation.load_copy_index()
    result = evaluation.evaluate_systems(
        segments,
        {"block_chords": evaluation.block_chord_baseline, "other_song": other_song},
        tempos,
        extra=lambda seg, notes: evaluation.copy_metrics(index, seg, notes),
        extra_units=evaluation.COPY_METRICS,
    )
    copies = result.per_segment["ground_truth"]["copied_2_bar_share"]
    return {
        "segments": len(segments),
        "metrics": {
            system: {m: percentiles(result.per_segment[system][m]) for m in NEW_METRICS}
            for system in result.systems
        },
        "ground_truth_copied_segments": [
            {
                **result.segments[i],
                "copied_2_bar_share": v,
                "longest_copied_bars": result.per_segment["ground_truth"]["longest_copied_bars"][i],
                "train_songs": train_songs(index, segments[i]),
            }
            for i, v in enumerate(copies)
            if math.isfinite(v) and v > 0
        ],
        "quality_bar": {
            system: evaluation.quality_bar(result, system)
            for system in ("block_chords", "other_song")
        },
    }


def fnet(count: int) -> dict:
    config = evaluation.EvaluationConfig(segments=count, seeds=(0, 1))
    report = evaluation.evaluation_report(["fnet"], config, teacher_forced=False)
    result = evaluation.report_result(report)
    return {
        "segments": count,
        "seeds": report["seeds"]["seeds"],
        "metrics": {
            system: {m: percentiles(result.per_segment[system][m]) for m in NEW_METRICS}
            for system in result.systems
        },
        "seed_median": {
            s: {m: report["seeds"]["median"][s][m] for m in NEW_METRICS} for s in result.systems
        },
        "seed_spread": {
            s: {m: report["seeds"]["spread"][s][m] for m in NEW_METRICS} for s in result.systems
        },
        "quality_bar": report["seeds"]["quality_bar"],
        "generation_seconds": report["details"]["models"]["fnet"]["seed_generation_seconds"],
    }


def json_ready(value):
    """NaN as ``None`` (JSON has no NaN), numpy numbers as Python numbers."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def number(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"


def table() -> str:
    base = stored["baselines"]
    lines = [
        "# The quality bar's checks of how a system plays: pianist, block chords, FNet",
        "",
        "Written by `python results/quality_bar_baselines.py --table` from",
        "`results/quality_bar_baselines.json` (see the script for how each part is computed).",
        "",
        f"## Ground truth and baselines on the {base['segments']} test segments",
        "",
        (
            "Per-segment values: median [10th, 90th percentile]; for the copy figures, which "
            "are 0 in most segments, mean and max. *other song*: the pianist of the next test "
            "song, cut to the segment."
        ),
        "",
        "| metric | unit | " + " | ".join(base["metrics"]) + " |",
        "|---|---|" + "---|" * len(base["metrics"]),
    ]
    units = {**evaluation.METRICS, **evaluation.COPY_METRICS}
    for metric in NEW_METRICS:
        cells = [cell(metric, base["metrics"][s][metric]) for s in base["metrics"]]
        lines.append(f"| {metric} | {units[metric]} | " + " | ".join(cells) + " |")
    bars = base["quality_bar"]
    lines += [
        "",
        "Quality bar of the baselines (thresholds from the pianist of the same segments):",
        "",
        "| check | threshold | " + " | ".join(bars) + " |",
        "|---|---|" + "---|" * len(bars),
    ]
    for row in zip(*bars.values()):
        threshold = row[0]["threshold"]
        if isinstance(threshold, list):
            shown = f"[{number(threshold[0])}, {number(threshold[1])}]"
        else:
            shown = number(threshold)
        cells = [f"{number(r['value'])} {'pass' if r['passed'] else '**fail**'}" for r in row]
        lines.append(f"| {row[0]['criterion']} | {shown} | " + " | ".join(cells) + " |")
    passed = [f"{s} {sum(r['passed'] for r in rows)}/{len(rows)}" for s, rows in bars.items()]
    lines += ["", "Checks passed: " + ", ".join(passed) + "."]
    lines += [
        "",
        "Test segments whose own accompaniment has 2-bar windows found in the train split:",
        "",
    ]
    lines += [
        f"- song {c['song_id']}, bars {c['first_bar']}+: {number(c['copied_2_bar_share'])} of "
        f"its 2-bar windows, longest run {number(c['longest_copied_bars'])} bars, found in "
        f"train song(s) {', '.join(c['train_songs'])}"
        for c in base["ground_truth_copied_segments"]
    ]
    if "fnet" in stored:
        run = stored["fnet"]
        systems = list(run["seed_median"])
        lines += [
            "",
            (
                f"## Shipped FNet on {run['segments']} test segments, seeds "
                f"{', '.join(map(str, run['seeds']))}"
            ),
            "",
            (
                "Median over segments, then median over seeds [min, max across seeds]; "
                "generation seconds per seed: "
                + ", ".join(f"seed {k}: {v:.0f} s" for k, v in run["generation_seconds"].items())
                + "."
            ),
            "",
            "| metric | " + " | ".join(systems) + " |",
            "|---|" + "---|" * len(systems),
        ]
        for metric in NEW_METRICS:
            cells = []
            for system in systems:
                low, high = run["seed_spread"][system][metric]
                middle = run["seed_median"][system][metric]
                cells.append(f"{number(middle)} [{number(low)}, {number(high)}]")
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines += ["", "| quality bar | seed | checks passed | failed |", "|---|---|---|---|"]
        for system, rows in run["quality_bar"].items():
            for r in rows:
                failed = "; ".join(r["failed"]) or "none"
                lines.append(f"| {system} | {r['seed']} | {r['passed']}/{r['checks']} | {failed} |")
    lines += [
        "",
        "## Key agreement across seeds (committed 96-segment runs)",
        "",
        (
            "Mean over segments of `key_agreement` (0/1 per segment) at each seed; "
            "the quality bar asks for at least 0.9 x the ground truth's."
        ),
        "",
    ]
    seeds = json.loads(SEED_RUNS.read_text()).get("seeds", {}) if SEED_RUNS.exists() else {}
    if seeds.get("per_seed"):
        systems = list(seeds["per_seed"])
        lines += ["| seed | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
        for position, seed in enumerate(seeds["seeds"]):
            cells = [number(seeds["per_seed"][s]["key_agreement"][position]) for s in systems]
            lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "--table"
    if what == "baselines":
        stored["baselines"] = json_ready(baselines())
    elif what == "fnet":
        stored["fnet"] = json_ready(fnet(int(sys.argv[2]) if len(sys.argv) > 2 else 8))
    if what in ("baselines", "fnet"):
        write_json(json_path, stored)
        print(f"wrote {json_path}")
    write_atomic(OUT.with_suffix(".md"), table().encode())
    print(f"wrote {OUT.with_suffix('.md')}")
