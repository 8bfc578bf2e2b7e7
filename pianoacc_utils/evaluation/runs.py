"""Running systems on evaluation segments: the models, the block-chord baseline, the ground truth.

A *system* is a function from a :class:`~pianoacc_utils.data.pop909.Segment` to
accompaniment notes (grid steps of the segment). :func:`evaluate_systems` runs
several on the same segments and summarises their
:func:`~pianoacc_utils.evaluation.metrics.segment_metrics`;
:func:`evaluate_checkpoints` does so for trained models on a split, as configured by
:class:`EvaluationConfig`, together with :func:`block_chord_baseline`, the rule that
any model should beat.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pianoacc_utils import data, generation, harmony, training
from pianoacc_utils import prepare as dataset
from pianoacc_utils.common import PianoaccError, config_dict
from pianoacc_utils.data.notes import Note, normalize_notes
from pianoacc_utils.data.pop909 import Segment, Song
from pianoacc_utils.defaults import (
    DEFAULT_CHORD_MASK,
    DEFAULT_CANDIDATES,
    DEFAULT_COMPOUND,
    DEFAULT_NOTE_OFF_BIAS,
    DEFAULT_RELEASE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    DEFAULT_VELOCITY_TEMPERATURE,
    HANGING_BEATS,
    STEPS_PER_BEAT,
)
from pianoacc_utils.evaluation.copying import COPY_METRICS, copy_metrics, load_copy_index
from pianoacc_utils.evaluation.critic import critic_report, segment_piece
from pianoacc_utils.evaluation.metrics import (
    DEFAULT_BEAT_SECONDS,
    METRICS,
    NOTE_FEATURE_BINS,
    OVERLAP_BINS,
    TEXTURE_METRICS,
    _check_beat_seconds,
    chord_pitch_classes,
    overlapping_area,
    segment_metrics,
)
from pianoacc_utils.evaluation.summary import GROUND_TRUTH, EvaluationResult, summarize
from pianoacc_utils.generation import SamplingConfig, segment_chords

BASELINE_VELOCITY = 70
"""MIDI velocity of every baseline note (a plain mezzo-forte)."""


BASELINE_BASS_LOWEST = 40
"""The baseline's bass root lies in E2..Eb3 (MIDI 40..51)."""


BASELINE_CHORD_ROOT = 60
"""The baseline's chord root lies in C4..B4 (MIDI 60..71), the other tones above it."""


# --------------------------------------------------------------------------- baseline


def block_chord_baseline(segment: Segment) -> list[Note]:
    """Rule-based accompaniment: a block chord on every beat of every annotated chord.

    For each chord span other than "N", on each quarter-note beat inside the span:
    the root as bass (E2..Eb3) plus the chord tones in root position from a root in
    octave 4 (C4..B4), velocity 70, held to the next beat or the chord's end (a chord
    starting between beats sounds from the next beat). Pitches follow the segment's
    ``transpose``; slash chords are played in root position.
    """
    import mir_eval

    notes = []
    for chord in segment.chords:
        if chord_pitch_classes(chord.label) is None:
            continue
        root, bitmap, _ = mir_eval.chord.encode(chord.label, reduce_extended_chords=True)
        root_class = (root + segment.transpose) % 12
        bass = BASELINE_BASS_LOWEST + (root_class - BASELINE_BASS_LOWEST) % 12
        tones = [BASELINE_CHORD_ROOT + root_class + int(i) for i in np.flatnonzero(bitmap)]
        first_beat = -(-max(chord.start, 0) // STEPS_PER_BEAT) * STEPS_PER_BEAT
        for beat in range(first_beat, chord.end, STEPS_PER_BEAT):
            end = min(beat + STEPS_PER_BEAT, chord.end)
            notes.extend(Note(beat, end, pitch, BASELINE_VELOCITY) for pitch in [bass, *tones])
    return normalize_notes(notes)


# --------------------------------------------------------------------------- one segment


def segment_beat_seconds(song: Song, seg: Segment) -> float:
    """Mean duration (seconds) of a quarter-note beat over the segment, from the song's grid."""
    start = int(song.grid.bar_starts[seg.first_bar])
    seconds = song.grid.to_seconds(np.array([start, start + seg.num_steps], dtype=np.float64))
    return float((seconds[1] - seconds[0]) / (seg.num_steps / STEPS_PER_BEAT))


def _beat_seconds_list(beat_seconds: float | Sequence[float] | None, count: int) -> list[float]:
    """One tempo per segment from ``None`` (0.5 s), a number, or a list of ``count``."""
    if beat_seconds is None:
        return [DEFAULT_BEAT_SECONDS] * count
    if np.isscalar(beat_seconds):
        return [_check_beat_seconds(beat_seconds)] * count  # type: ignore[arg-type]
    values = [_check_beat_seconds(v) for v in beat_seconds]  # type: ignore[union-attr]
    if len(values) != count:
        raise PianoaccError(f"beat_seconds has {len(values)} values for {count} segments")
    return values


def _ground_truth(seg: Segment) -> list[Note]:
    return list(seg.accompaniment)


ExtraMetrics = Callable[[Segment, Sequence[Note]], Mapping[str, float]]
"""More per-segment metrics: (segment, accompaniment) -> {name: value}."""


def evaluate_systems(
    segments: Sequence[Segment],
    systems: Mapping[str, Callable[[Segment], Sequence[Note]]],
    beat_seconds: float | Sequence[float] | None = None,
    progress: bool = True,
    resamples: int = 1000,
    seed: int = 0,
    extra: ExtraMetrics | None = None,
    extra_units: Mapping[str, str] | None = None,
) -> EvaluationResult:
    """Run every system on every segment, compute :func:`segment_metrics`, summarise.

    The ground truth (the segment's own accompaniment) is always the first system,
    ``"ground_truth"``. ``beat_seconds`` is one value per segment (seconds per beat;
    see :func:`segment_beat_seconds`), one value for all, or ``None`` for 0.5 s.
    Summaries resample segments (``resamples`` times, generator seed ``seed``), so
    the same segments are drawn for every system and metric with the same count.
    ``extra`` adds the metrics named in ``extra_units`` (name -> unit, recorded in
    ``settings["units"]``), such as :func:`~pianoacc_utils.evaluation.copy_metrics`.
    """
    from tqdm.auto import tqdm

    if not segments:
        raise PianoaccError("evaluate_systems needs at least one segment")
    if GROUND_TRUTH in systems:
        raise PianoaccError(f"{GROUND_TRUTH!r} is always evaluated; name other systems otherwise")
    if (extra is None) != (extra_units is None):
        raise PianoaccError("evaluate_systems needs both extra and extra_units, or neither")
    runners = {GROUND_TRUTH: _ground_truth, **systems}
    tempos = _beat_seconds_list(beat_seconds, len(segments))
    units = {**METRICS, **(extra_units or {})}
    per_segment: dict[str, dict[str, list[float]]] = {s: {m: [] for m in units} for s in runners}
    pooled: dict[str, dict[str, list[int]]] = {
        s: {f: [] for f in NOTE_FEATURE_BINS} for s in runners
    }
    for seg, tempo in tqdm(list(zip(segments, tempos)), desc="evaluate", disable=not progress):
        for system, run in runners.items():
            accompaniment = list(run(seg))
            values = dict(segment_metrics(seg, accompaniment, tempo))
            values.update(extra(seg, accompaniment) if extra is not None else {})
            for metric in units:
                per_segment[system][metric].append(values[metric])
            pooled[system]["pitch"].extend(n.pitch for n in accompaniment)
            pooled[system]["velocity"].extend(n.velocity for n in accompaniment)
            pooled[system]["duration"].extend(n.end - n.start for n in accompaniment)
    summary = {
        system: {m: summarize(values, resamples, seed) for m, values in rows.items()}
        for system, rows in per_segment.items()
    }
    truth, truth_notes = per_segment[GROUND_TRUTH], pooled[GROUND_TRUTH]
    overlap = {}
    for system in runners:
        row = {m: overlapping_area(per_segment[system][m], truth[m]) for m in TEXTURE_METRICS}
        for feature, edges in NOTE_FEATURE_BINS.items():
            row[feature] = overlapping_area(pooled[system][feature], truth_notes[feature], edges)
        overlap[system] = row
    segment_rows = [
        {
            "song_id": seg.song_id,
            "first_bar": seg.first_bar,
            "num_bars": seg.num_bars,
            "transpose": seg.transpose,
            "beat_seconds": tempo,
        }
        for seg, tempo in zip(segments, tempos)
    ]
    return EvaluationResult(
        systems=list(runners),
        metrics=list(units),
        segments=segment_rows,
        per_segment=per_segment,
        summary=summary,
        overlap=overlap,
        settings={
            "resamples": resamples,
            "seed": seed,
            "level": 0.95,
            "overlap_bins": OVERLAP_BINS,
            "units": units,
        },
    )


# --------------------------------------------------------------------------- models on the test split


@dataclass(frozen=True)
class EvaluationConfig:
    """Which segments and how to generate for ``pianoacc evaluate``.

    Segments are ``bars_per_segment``-bar windows (non-overlapping) of the songs of
    ``split``; ``segments`` keeps that many, evenly spread over the split (``None``:
    all). Generation primes each segment with its first ``primer_tokens``
    ground-truth tokens (0: from the melody alone) and samples with the given settings.
    ``chords``: what the models are given as harmony, one of
    :data:`~pianoacc_utils.generation.CHORD_SOURCES` (``"annotated"``: the segment's
    chord annotation, as on a lead sheet; ``"estimated"``: chords estimated from the
    melody alone; ``"none"``). ``chord_mask``: keep note-ons to the chord's tones while
    sampling (``generation.SamplingConfig``); ``release``: release hanging notes
    (``generation.release_notes``), those the decoder never ended after at most
    ``hanging_beats`` beats. ``candidates``: windows sampled per window, of which the
    reranker keeps the one most like the pianist (``generation.rerank``; 1: no
    reranking); ``reranker``: that reranker's file (``None``: the model's own where it has
    one, else the shipped one: ``generation.reranker_file``).
    ``overlap_bars``: bars of each window primed by the accompaniment already made
    (``generation.WindowConfig``; ``None``: the model's default,
    ``generation.default_window``). ``compound``: how melody files' compound bars are
    accompanied (:data:`~pianoacc_utils.common.COMPOUND_MODES`; POP909 has none).
    ``meter``: the segments' four-beat bars re-barred (:func:`pianoacc_utils.data.rebar`,
    ``"3/4"`` or ``"2/4"``; ``"4/4"`` leaves them), ground truth included, to measure
    how the models keep time in meters POP909 hardly has. ``seeds``: sampling seeds
    that :func:`~pianoacc_utils.evaluation.evaluation_report` evaluates one after
    another (empty: ``seed`` alone); each run samples with its own seed as ``seed``.
    ``copy_check``: also look every system's bars up in the train split
    (:mod:`~pianoacc_utils.evaluation.copying`; the index is built once, then cached).
    ``shift_temperature``, ``pitch_temperature``: as ``SamplingConfig``'s (``None``: the
    main temperature). ``critic``: run the critic (:func:`~pianoacc_utils.evaluation.critic.critic_report`:
    can a classifier tell each model, and the controls, from the pianist?) on the
    segments; :func:`~pianoacc_utils.evaluation.evaluation_report` runs it at the first
    seed only.
    """

    split: str = "test"
    bars_per_segment: int = 32
    segments: int | None = None
    primer_tokens: int = 0
    temperature: float = DEFAULT_TEMPERATURE
    velocity_temperature: float | None = DEFAULT_VELOCITY_TEMPERATURE
    note_off_bias: float = DEFAULT_NOTE_OFF_BIAS
    top_k: int | None = None
    top_p: float | None = DEFAULT_TOP_P
    seed: int = 0
    batch_size: int = 32
    chords: str = "annotated"
    chord_mask: bool = DEFAULT_CHORD_MASK
    release: bool = DEFAULT_RELEASE
    hanging_beats: float = HANGING_BEATS
    candidates: int = DEFAULT_CANDIDATES
    reranker: str | None = None
    overlap_bars: int | None = None
    compound: str = DEFAULT_COMPOUND
    meter: str = "4/4"
    seeds: tuple[int, ...] = ()
    copy_check: bool = True
    critic: bool = True
    shift_temperature: float | None = None
    pitch_temperature: float | None = None

    def sampling(self) -> SamplingConfig:
        """The ``generation.SamplingConfig`` of these settings."""

        return SamplingConfig(
            self.temperature, self.top_k, self.top_p, self.seed, self.chord_mask,
            self.velocity_temperature, self.note_off_bias, self.shift_temperature,
            self.pitch_temperature,
        )


def split_segments(config: EvaluationConfig = EvaluationConfig()) -> tuple[list[Segment], list[float]]:
    """The evaluation segments of a split (re-barred into ``config.meter``) and each
    one's mean beat duration (seconds)."""

    root = data.find_pop909_dir()
    splits = data.split_songs(data.song_ids(root))
    if config.split not in splits:
        raise PianoaccError(f"unknown split {config.split!r}: expected one of {', '.join(splits)}")
    segments, tempos = [], []
    for song_id in splits[config.split]:
        song = data.load_song(song_id, root=root)
        for seg in data.segment(song, config.bars_per_segment):
            segments.append(data.rebar(seg, config.meter))
            tempos.append(segment_beat_seconds(song, seg))
    if config.segments is not None and config.segments < len(segments):
        chosen = np.unique(np.linspace(0, len(segments) - 1, config.segments).round().astype(int))
        segments = [segments[i] for i in chosen]
        tempos = [tempos[i] for i in chosen]
    return segments, tempos


def teacher_forced_metrics(checkpoint: str | Path, split: str = "test") -> dict[str, float]:
    """Masked loss, token accuracy and perplexity of a checkpoint on a prepared split.

    Uses the data settings the model was trained with (``config.json`` beside the
    checkpoint), so the sequences are cut exactly as in training.
    """

    path = generation.resolve_checkpoint(checkpoint)
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        raise PianoaccError(f"{config_path}: missing; it records how the model was trained")
    profile = training.Profile.from_dict(json.loads(config_path.read_text())["profile"])
    model, _ = generation.load_checkpoint(path)
    folder = dataset.prepare(profile.prepare, progress=False)
    batches = training.SegmentBatches(
        dataset.load_split(folder, split),
        model.config,
        batch_size=profile.train.batch_size,
        shuffle=False,
        length_multiple=profile.train.length_multiple,
    )
    training.compile_model(model, profile.train)
    values = model.evaluate(batches.for_fit(), verbose=0, return_dict=True)
    return {
        "loss": float(values["loss"]),
        "accuracy": float(values["accuracy"]),
        "perplexity": float(values["perplexity"]),
    }


def system_name(checkpoint: str | Path, taken: Sequence[str] = ()) -> str:
    """Report name of a checkpoint: its model kind (``fnet``), made unique if needed."""

    model_kind = None
    config_path = generation.resolve_checkpoint(checkpoint).parent / "config.json"
    if config_path.is_file():
        model_kind = json.loads(config_path.read_text()).get("kind")
    name = model_kind or Path(str(checkpoint)).stem
    suffix = 2
    unique = name
    while unique in taken or unique == GROUND_TRUTH:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    return unique


def generate_for_segments(
    checkpoint: str | Path, segments: Sequence[Segment], config: EvaluationConfig
) -> list[list[Note]]:
    """Accompaniments of a checkpoint for every segment, in batches."""

    model, window = generation.load_checkpoint(checkpoint)
    window = config_window(window, config)
    sampling = config.sampling()
    decoder = generation.CachedDecoder(model, sampling)
    reranker = generation.candidate_reranker(checkpoint, config.candidates, config.reranker)
    results: list[list[Note]] = []
    for first in range(0, len(segments), config.batch_size):
        batch = segments[first : first + config.batch_size]
        results += generation.accompany_segment(
            model, batch, sampling, window, config.primer_tokens, decoder, chords=config.chords,
            release=config.release, hanging_beats=config.hanging_beats,
            candidates=config.candidates, reranker=reranker,
        )
    return results


def config_window(window: generation.WindowConfig, config: EvaluationConfig) -> generation.WindowConfig:
    """A model's ``window`` with the overlap of ``config`` where it sets one."""
    return window.with_overlap(config.overlap_bars)


def evaluate_checkpoints(
    checkpoints: Sequence[str | Path],
    config: EvaluationConfig = EvaluationConfig(),
    progress: bool = True,
    baseline: bool = True,
    teacher_forced: bool = True,
) -> tuple[EvaluationResult, dict[str, Any]]:
    """Evaluate models (and the block-chord baseline) against the ground truth.

    Returns the metric summaries and a dict with, per model, the teacher-forced
    metrics (:func:`teacher_forced_metrics`, ``None`` with ``teacher_forced=False``:
    they need the model's whole prepared split), the windows it generated with (bars and
    overlap: the model's own unless ``config`` sets one) and the generation time (seconds),
    plus the configuration and segment count. With ``config.copy_check`` the result
    has the :data:`~pianoacc_utils.evaluation.copying.COPY_METRICS` of every system
    against the train split (:func:`~pianoacc_utils.evaluation.copying.load_copy_index`).
    With ``config.critic`` the dict has ``critic``: :func:`evaluation_critic` of the models.
    """
    import time

    segments, tempos = split_segments(config)
    if not segments:
        raise PianoaccError(f"no {config.bars_per_segment}-bar segments in split {config.split!r}")
    index = {id(seg): i for i, seg in enumerate(segments)}
    systems: dict[str, Callable[[Segment], Sequence[Note]]] = {}
    details: dict[str, Any] = {"config": config_dict(config), "segments": len(segments), "models": {}}
    for checkpoint in checkpoints:
        name = system_name(checkpoint, list(systems))
        began = time.perf_counter()
        generated = generate_for_segments(checkpoint, segments, config)
        seconds = time.perf_counter() - began
        systems[name] = lambda seg, notes=generated: notes[index[id(seg)]]
        details["models"][name] = {
            "checkpoint": str(checkpoint),
            "window": asdict(config_window(generation.checkpoint_window(checkpoint), config)),
            "generation_seconds": round(seconds, 2),
            "teacher_forced": (
                teacher_forced_metrics(checkpoint, config.split) if teacher_forced else None
            ),
        }
    if baseline:
        systems["block_chords"] = block_chord_baseline
    extra, units = None, None
    if config.copy_check:
        copy_index = load_copy_index()
        extra, units = (lambda seg, notes: copy_metrics(copy_index, seg, notes)), COPY_METRICS
    result = evaluate_systems(
        segments, systems, tempos, progress=progress, extra=extra, extra_units=units
    )
    details["estimated_chords"] = estimated_chord_agreement(segments)
    if config.critic:
        models = {name: [systems[name](seg) for seg in segments] for name in details["models"]}
        details["critic"] = evaluation_critic(segments, models)
    return result, details


def evaluation_critic(
    segments: Sequence[Segment], models: Mapping[str, Sequence[Sequence[Note]]]
) -> dict[str, Any]:
    """:func:`~pianoacc_utils.evaluation.critic.critic_report` of models' accompaniments
    of segments (one list of notes per segment), with block chords
    (:func:`block_chord_baseline`) among the controls; ``{"skipped": reason}`` when the
    segments come from fewer than two songs (folds are grouped by song)."""
    songs = {seg.song_id for seg in segments}
    if len(songs) < 2:
        return {"skipped": f"the critic needs segments of at least 2 songs, got {len(songs)}"}
    pieces = [segment_piece(seg) for seg in segments]
    blocks = [block_chord_baseline(seg) for seg in segments]
    return critic_report(pieces, models, {"block_chords": blocks})


def estimated_chord_agreement(segments: Sequence[Segment]) -> dict[str, float]:
    """How often chords estimated from the melody alone
    (:func:`pianoacc_utils.harmony.learned_chords`) match the annotation, per beat
    (same root and major/minor third; :func:`~pianoacc_utils.harmony.beat_agreement`),
    summarised over segments (:func:`summarize`)."""

    values = [
        harmony.beat_agreement(
            segment_chords(seg, "estimated"), segment_chords(seg, "annotated"), seg.num_steps
        )
        for seg in segments
    ]
    return summarize(values)
