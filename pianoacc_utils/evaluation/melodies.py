"""Judging accompaniments of melodies from outside POP909, which have no ground truth.

A melody MIDI file brings its own grid (tempo map, meters, pickups), so only the
metrics that need no pianist apply: does the accompaniment cover the melody's bars,
sit on its beats, stay consonant and end with it (:func:`melody_metrics`).
:func:`evaluate_melodies` accompanies a set of files with a checkpoint and judges
them; :func:`melodies_markdown` writes the tables of ``results/evaluation.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pianoacc_utils import data, generation, harmony
from pianoacc_utils.common import PianoaccError, config_dict
from pianoacc_utils.data.melody_midi import Melody
from pianoacc_utils.data.notes import Note
from pianoacc_utils.defaults import (
    DEFAULT_CANDIDATES,
    DEFAULT_COMPOUND,
    DEFAULT_RELEASE,
    HANGING_BEATS,
    STEPS_PER_BEAT,
)
from pianoacc_utils.evaluation.metrics import (
    BAR_OFF_BEATS,
    DEFAULT_BEAT_SECONDS,
    SIXTEENTH_BEATS,
    _check_beat_seconds,
    _distance_to_grid,
    _grid_tolerance_beats,
    _onset_beats,
    bar_offsets,
    ending_offset_bars,
    grid_share,
    key_agreement,
    melody_beat_coverage,
    melody_consonance,
    notes_per_bar,
    silent_bar_share,
)
from pianoacc_utils.evaluation.summary import _format_number, _to_json_ready
from pianoacc_utils.generation.sampling import SamplingConfig

TRIPLET_BEATS = 1 / 3
"""Period (beats) of the eighth-note-triplet grid allowed in :func:`melody_grid_share`."""


MELODY_METRICS: dict[str, str] = {
    "silent_bar_share": "share of melody bars",
    "ending_offset_bars": "bars",
    "grid_share": "share of onsets",
    "melody_grid_share": "share of melody onsets",
    "melody_beat_coverage": "share of on-beat melody onsets",
    "bars_off_share": "share of bars",
    "median_bar_offset": "beats",
    "melody_consonance": "share of overlap steps",
    "melody_key_compatible": "0/1 per melody",
    "notes_per_bar": "notes",
}
"""Every metric of :func:`melody_metrics`, in report order, with its unit."""


MELODY_TABLE_METRICS = (
    "silent_bar_share",
    "ending_offset_bars",
    "grid_share",
    "melody_grid_share",
    "bars_off_share",
    "median_bar_offset",
)
"""The metrics :func:`melodies_markdown` shows per melody."""


def melody_beat_seconds(melody: Melody) -> float:
    """Mean duration (seconds) of a quarter-note beat over a melody, from its own grid.

    The mean runs from step 0 to the melody's end (a tune that changes tempo gets
    its average beat).
    """
    end = max(int(melody.end_step), 1)
    seconds = melody.grid.to_seconds(np.array([0, end], dtype=np.float64))
    return _check_beat_seconds(float(seconds[1] - seconds[0]) / (end / STEPS_PER_BEAT))


def melody_grid_share(melody: Sequence[Note], beat_seconds: float = DEFAULT_BEAT_SECONDS) -> float:
    """Share of melody onsets on the sixteenth-note or the eighth-note-triplet grid of the beats.

    Like :func:`grid_share` (distance strictly below min(30 ms, 1/8 beat)), but an
    onset also counts when it is that close to a multiple of 1/3 beat, since tunes
    have triplets. A low value means the melody's file does not follow its own
    beats (a played recording, a wrong tempo map). NaN without notes.
    """
    beats = _onset_beats(melody)
    if len(beats) == 0:
        return math.nan
    tolerance = _grid_tolerance_beats(beat_seconds)
    distance = np.minimum(
        _distance_to_grid(beats, SIXTEENTH_BEATS), _distance_to_grid(beats, TRIPLET_BEATS)
    )
    return float(np.mean(distance < tolerance))


def melody_metrics(melody: Melody, accompaniment: Sequence[Note]) -> dict[str, float]:
    """Every metric of :data:`MELODY_METRICS` for an accompaniment of a melody without ground truth.

    ``accompaniment`` is in grid steps on the melody's grid. Bars are the melody's
    bars, the last one ending with the melody (``end_step``); tolerances in
    milliseconds use :func:`melody_beat_seconds`. ``melody_key_compatible`` is 1 when the
    accompaniment's estimated key is the melody's or its relative key. NaN: undefined.
    """
    notes, bars, steps = list(melody.notes), melody.grid.bar_starts, int(melody.end_step)
    beat_seconds = melody_beat_seconds(melody)
    offsets = bar_offsets(accompaniment, bars, steps)
    keys = key_agreement(accompaniment, notes, None)
    metrics = {
        "silent_bar_share": silent_bar_share(notes, accompaniment, bars, steps),
        "ending_offset_bars": ending_offset_bars(notes, accompaniment, bars, steps),
        "grid_share": grid_share(accompaniment, beat_seconds),
        "melody_grid_share": melody_grid_share(notes, beat_seconds),
        "melody_beat_coverage": melody_beat_coverage(notes, accompaniment, beat_seconds),
        "bars_off_share": (
            float(np.mean(np.abs(offsets) >= BAR_OFF_BEATS)) if len(offsets) else math.nan
        ),
        "median_bar_offset": float(np.median(offsets)) if len(offsets) else math.nan,
        "melody_consonance": melody_consonance(notes, accompaniment),
        "melody_key_compatible": keys["melody_key_compatible"],
        "notes_per_bar": notes_per_bar(accompaniment, len(bars)),
    }
    return {name: metrics[name] for name in MELODY_METRICS}


def _meters(melody: Melody) -> list[str]:
    """The melody file's time signatures in order, repeats merged (``["4/4"]`` when none)."""
    names = [f"{s.numerator}/{s.denominator}" for s in melody.midi.time_signature_changes]
    return [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name] or ["4/4"]


def _finite_median(values: Sequence[float]) -> float:
    """Median of the finite values (NaN when there is none)."""
    sample = np.asarray(values, dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    return float(np.median(sample)) if len(sample) else math.nan


def evaluate_melodies(
    checkpoint: str | Path,
    paths: Sequence[str | Path],
    sampling: SamplingConfig | None = None,
    out_dir: str | Path | None = None,
    chords: str = "estimated",
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
    compound: str = DEFAULT_COMPOUND,
    candidates: int = DEFAULT_CANDIDATES,
    reranker: generation.Reranker | None = None,
    overlap_bars: int | None = None,
) -> dict[str, Any]:
    """Accompany melody MIDI files with a checkpoint and judge them with :func:`melody_metrics`.

    All melodies are generated together (batched window by window), as ``pianoacc
    accompany`` would one by one; ``sampling`` defaults to ``SamplingConfig()``.
    The model plays to chords estimated from each melody (``chords="estimated"``,
    as ``pianoacc accompany`` does by default) or to none (``"none"``); ``release``,
    ``hanging_beats``, ``candidates`` and ``reranker`` as in ``generation.accompany``
    (``reranker`` ``None``: the checkpoint's own, ``generation.reranker_file``), ``compound``
    as in ``generation.accompany_melodies``; ``overlap_bars`` as in ``generation.WindowConfig``
    (``None``: the model's default).
    With ``out_dir`` each arrangement (melody + PIANO) is written there as
    ``<melody name>.mid``. Returns a JSON-ready dict (NaN as ``None``):
    ``checkpoint``, ``sampling``, the generation rules, ``window`` (its bars and the
    overlap used), ``generation_seconds``, ``melodies`` (per melody:
    ``name``, ``path``, ``meters``, ``bars``, ``tempo_bpm`` [lowest, highest],
    ``notes`` (accompaniment notes), ``metrics``) and ``medians`` (per metric, over
    the melodies where it is defined).
    """
    import time


    if not paths:
        raise PianoaccError("evaluate_melodies needs at least one melody MIDI file")
    sampling = sampling if sampling is not None else generation.SamplingConfig()
    melodies = [data.load_melody(path) for path in paths]
    model, window = generation.load_checkpoint(checkpoint)
    window = window.with_overlap(overlap_bars)
    began = time.perf_counter()
    if chords not in ("estimated", "none"):
        raise PianoaccError(f"chords {chords!r} for melodies: expected estimated or none")
    accompaniments = generation.accompany_melodies(
        model, melodies, sampling, window,
        chords=[
            harmony.learned_chords(m.notes, m.grid.bar_starts, m.end_step)
            if chords == "estimated" else []
            for m in melodies
        ],
        release=release,
        hanging_beats=hanging_beats,
        compound=compound,
        candidates=candidates,
        reranker=(reranker if reranker is not None
                  else generation.candidate_reranker(checkpoint, candidates)),
    )
    seconds = time.perf_counter() - began
    rows = []
    for melody, accompaniment in zip(melodies, accompaniments):
        if out_dir is not None:
            data.write_arrangement(melody, accompaniment, Path(out_dir) / f"{melody.path.stem}.mid")
        tempi = melody.midi.get_tempo_changes()[1]
        rows.append(
            {
                "name": melody.path.stem,
                "path": str(melody.path),
                "meters": _meters(melody),
                "bars": melody.num_bars,
                "tempo_bpm": [float(np.min(tempi)), float(np.max(tempi))],
                "notes": len(accompaniment),
                "metrics": melody_metrics(melody, accompaniment),
            }
        )
    medians = {
        metric: _finite_median([row["metrics"][metric] for row in rows])
        for metric in MELODY_METRICS
    }
    return _to_json_ready(
        {
            "checkpoint": str(checkpoint),
            "sampling": config_dict(sampling),
            "chords": chords,
            "release": release,
            "hanging_beats": hanging_beats,
            "candidates": candidates,
            "window": {"bars": window.bars, "overlap_bars": window.overlap_bars},
            "compound": compound,
            "generation_seconds": round(seconds, 2),
            "melodies": rows,
            "medians": medians,
        }
    )


def melodies_markdown(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One markdown table per system of :func:`evaluate_melodies` results (``{system: result}``).

    Rows are melodies (name, meter, bars, then :data:`MELODY_TABLE_METRICS`), the
    last row the medians over melodies; ``n/a`` marks an undefined value.
    """
    tables = []
    for system, result in results.items():
        lines = [
            f"{system}: {len(result['melodies'])} melodies, generated in "
            f"{result['generation_seconds']} s",
            "",
            "| melody | meter | bars | " + " | ".join(MELODY_TABLE_METRICS) + " |",
            "|---|---|---|" + "---|" * len(MELODY_TABLE_METRICS),
        ]
        for row in result["melodies"]:
            cells = [_format_number(row["metrics"][m]) for m in MELODY_TABLE_METRICS]
            meter = " -> ".join(row["meters"])
            lines.append(f"| {row['name']} | {meter} | {row['bars']} | " + " | ".join(cells) + " |")
        cells = [_format_number(result["medians"][m]) for m in MELODY_TABLE_METRICS]
        lines.append("| **median** | | | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"
