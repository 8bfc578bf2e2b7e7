"""The window loop: a whole melody in, its accompaniment notes out.

A model reads a window of as many bars as it was trained on (8 for the shipped models),
so a longer melody is accompanied window by window (:func:`accompany`). Each window
starts ``overlap_bars`` bars before the end of what is already accompanied: the notes of
those bars, already final, are encoded as the decoder's primer, so that the new window
continues them instead of starting afresh, and the result is one continuous piece. All
melodies of a call advance together, one batched decoding per window.

:func:`accompany` is a short loop over named steps: :func:`plan_jobs` (one :class:`Job`
per melody), then, for every window, :func:`next_window` (where the window lies and what
the model reads of it: a :class:`Window`), :func:`decode_windows` (one batched decoding),
:func:`keep_new_notes` (the new tokens back into notes) and :func:`advance_position`.

Three rules keep the accompaniment with the melody:

* a window never runs past its end: the decoder masks time shifts that would overshoot
  it (:func:`~pianoacc_utils.generation.sampling.mask_logits`), and the loop then moves
  to the window's end, so the accompaniment cannot drift from the melody's bars;
* each window passes its own bar lines and chords to the model (its bar table and
  harmony table: "Time signal" and "Harmony signal" in :mod:`pianoacc_utils.models`);
* notes the decoder left hanging are released
  (:func:`~pianoacc_utils.generation.release.release_notes`, on unless
  ``release=False``) at the first chord change that leaves their pitch class out, and
  after :data:`~pianoacc_utils.defaults.MAX_HELD_BEATS` beats at most. An event decoder
  must end each note with its own note-off token; sampling often skips it, and such a
  note would otherwise sound to the end of the window. Both the release and the limit
  on hanging notes were chosen on the validation split (``results/chord_mask_validation.md``,
  ``results/hanging_validation.md``).

:data:`CHORD_SOURCES` names where the chords of a POP909 segment come from: the
annotation (``"annotated"``, a lead sheet), :func:`~pianoacc_utils.harmony.learned_chords`
on the melody alone (``"estimated"``), or nowhere (``"none"``: an all-zero harmony table).
Melodies read from MIDI files go through :func:`accompany_melodies`, which accompanies
bars in a compound meter (6/8, 9/8, ...) through the swing map of
:mod:`pianoacc_utils.data.compound`.

Times are grid steps (a 32nd note: :data:`~pianoacc_utils.defaults.STEPS_PER_BEAT` per beat).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from pianoacc_utils import harmony, models
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import compound as compound_meter
from pianoacc_utils.data.melody_midi import Melody
from pianoacc_utils.data.notes import Note, Span, normalize_notes, notes_in
from pianoacc_utils.data.pop909 import Segment
from pianoacc_utils.defaults import (DEFAULT_CANDIDATES, DEFAULT_COMPOUND, DEFAULT_RELEASE,
                                     HANGING_BEATS, STEPS_PER_BEAT)
from pianoacc_utils.generation.decoder import BAR_BUCKET, TABLE_BEATS, CachedDecoder, pad_melodies
from pianoacc_utils.generation import rerank
from pianoacc_utils.generation.release import release_notes
from pianoacc_utils.generation.rerank import Reranker
from pianoacc_utils.generation.sampling import TOKENIZER, SamplingConfig

CHORD_SOURCES = ("annotated", "estimated", "none")
"""Where the chords of a POP909 segment come from (see the module docstring)."""


# --------------------------------------------------------------------------- windows over a melody


@dataclass(frozen=True)
class WindowConfig:
    """How a melody is cut for the model: windows of ``bars`` bars, overlapping by
    ``overlap_bars`` (whose accompaniment primes the next window), so that each window
    after the first adds ``bars - overlap_bars`` bars (``generation.default_window``: the
    default for a model's window)."""

    bars: int = 8
    overlap_bars: int = 6

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_bars < self.bars:
            raise PianoaccError(f"windows of {self.bars} bars overlap by 0 to {self.bars - 1} "
                                f"bars, not {self.overlap_bars}")

    def with_overlap(self, overlap_bars: int | None) -> "WindowConfig":
        """These windows overlapping by ``overlap_bars`` instead (``None``: unchanged)."""
        return self if overlap_bars is None else replace(self, overlap_bars=overlap_bars)


@dataclass
class Job:
    """Generation state of one melody: what is done and where the next window starts."""

    melody: list[Note]
    chords: list[Span]
    bar_starts: list[int]
    num_steps: int
    notes: list[Note]  # the accompaniment so far (final), in absolute steps
    position: int  # grid step up to which the accompaniment is final
    tonic: int | None = None  # the melody's key tonic, once :func:`job_tonic` found it
    table: np.ndarray | None = None  # the chords' beat table over the melody, once needed

    def chord_table(self) -> np.ndarray:
        """:func:`harmony.beat_table` of the chords over the whole melody (made once)."""
        if self.table is None:
            self.table = harmony.beat_table(self.chords, self.num_steps)
        return self.table


@dataclass(frozen=True)
class Window:
    """What the model reads of one job's next window; times in steps from ``origin``."""

    origin: int  # absolute step that the window's times count from
    end: int  # absolute step where the window ends
    melody_ids: list[int]  # the encoder's input: the window's melody notes as tokens
    primer_ids: list[int]  # the accompaniment already final from the origin on, as tokens
    harmony_table: np.ndarray  # one row of chord tones per beat (:func:`harmony.beat_table`)
    bar_lines: list[int]  # the window's bar lines


def primer_tokens(context: Sequence[Note], steps: int, budget: int) -> list[int]:
    """Tokens of the accompaniment already fixed in a window, lasting exactly ``steps``.

    ``context`` holds the notes (relative to the window start) of the first
    ``steps`` grid steps. At most ``budget`` tokens: when the notes need more, the
    latest events are dropped but the time shifts still reach ``steps``, so that
    generation starts exactly where the fixed accompaniment ends.
    """
    tokens = TOKENIZER.encode(context)
    primer = tokens + TOKENIZER.shift_tokens(steps - TOKENIZER.duration_steps(tokens))
    if len(primer) > budget:
        tokens = tokens[: max(budget - len(TOKENIZER.shift_tokens(steps)), 0)]
        primer = tokens + TOKENIZER.shift_tokens(steps - TOKENIZER.duration_steps(tokens))
    return primer


def _pickup_lead(bar_starts: Sequence[int]) -> int:
    """Steps to start the first window *before* step 0 so that the second bar line falls
    on a beat of the window's time (0 unless the first bar is a pickup of a part of a beat,
    e.g. 4 steps for an eighth-note pickup). The model reads times from the window start
    (step-in-beat and beat embeddings), so without this lead a melody with such a pickup
    would be accompanied half a beat off for the whole first window. Only for models
    without the meter signal: the others read the bar lines themselves."""
    if len(bar_starts) < 2:
        return 0
    return -(int(bar_starts[1]) - int(bar_starts[0])) % STEPS_PER_BEAT


def _bar_at_or_before(bar_starts: Sequence[int], step: int) -> int:
    """Index of the bar that holds grid step ``step`` (0 before the first bar line)."""
    index = int(np.searchsorted(bar_starts, step, side="right")) - 1
    return max(index, 0)


def accompany(
    model: models.AccompanimentModel,
    melodies: Sequence[tuple[Sequence[Note], Sequence[int], int]],
    sampling: SamplingConfig = SamplingConfig(),
    window: WindowConfig = WindowConfig(),
    primers: Sequence[Sequence[Note]] | None = None,
    decoder: CachedDecoder | None = None,
    chords: Sequence[Sequence[Span]] | None = None,
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
    candidates: int = DEFAULT_CANDIDATES,
    reranker: Reranker | None = None,
) -> list[list[Note]]:
    """Accompaniment for each melody, given as ``(notes, bar_starts, num_steps)`` in steps.

    ``chords`` gives each melody's chord spans (steps, as the melody), which the
    model reads as its harmony tables; ``None``, or an empty list for a melody,
    means no chords are known (see :func:`~pianoacc_utils.harmony.learned_chords` to estimate them).
    ``release``: apply :func:`release_notes` to each window's new notes, with the notes
    the decoder left hanging lasting at most ``hanging_beats`` beats. Each window passes
    its bar lines (from ``bar_starts``) to the model ("Time signal" in :mod:`models`).

    Melodies are processed together, window by window (batched across melodies).
    ``primers`` optionally gives ground-truth accompaniment notes that are kept as
    they are and prime the first window (the original project primed with its
    first 256 ground-truth tokens); generation continues after the primer's last onset.
    Nothing is generated past ``num_steps``.

    ``candidates`` > 1 samples that many continuations of every window (more rows of the
    same batched decoding) and keeps the one that ``reranker`` (default: the shipped one,
    :func:`~pianoacc_utils.generation.rerank.shipped_reranker`) finds most like the
    pianist (:mod:`~pianoacc_utils.generation.rerank`).
    """
    # One decoder for every window: it keeps its compiled sampling loop (few retracings).
    decoder = decoder or CachedDecoder(model, sampling)
    candidates = rerank.check_candidates(candidates)
    if candidates > 1 and reranker is None:
        reranker = rerank.shipped_reranker()
    jobs = plan_jobs(melodies, primers, chords)
    # One pass per window: every melody not yet accompanied to its end adds one row
    # (``candidates`` rows: one per candidate).
    while active := [job for job in jobs if job.position < job.num_steps]:
        windows = [next_window(job, window, model.config) for job in active]
        rows = [win for win in windows for _ in range(candidates)]
        generated = decode_windows(decoder, rows, model.config.melody_length, candidates)
        for i, (job, win) in enumerate(zip(active, windows)):
            options = generated[i * candidates : (i + 1) * candidates]
            notes = [keep_new_notes(job, win, tokens, release, hanging_beats) for tokens in options]
            ends = [advance_position(job, win, tokens, model.config.accompaniment_length)
                    for tokens in options]
            best = 0
            if candidates > 1:
                best = rerank.choose([
                    rerank.candidate_score(reranker, job.melody, found, job.bar_starts,
                                           job.position, end, job_tonic(job))
                    for found, end in zip(notes, ends)
                ])
            job.notes += notes[best]
            job.position = ends[best]
    # One sorted list of playable notes per melody (primer included: normalize_notes).
    return [normalize_notes(job.notes) for job in jobs]


def job_tonic(job: Job) -> int:
    """The tonic pitch class of the job's melody (relative major for a minor key), found
    once (:func:`~pianoacc_utils.harmony.learned.melody_tonic`): what the reranker counts
    pitch classes from."""
    if job.tonic is None:
        job.tonic = harmony.melody_tonic(job.melody)[0] if job.melody else 0
    return job.tonic


def plan_jobs(
    melodies: Sequence[tuple[Sequence[Note], Sequence[int], int]],
    primers: Sequence[Sequence[Note]] | None = None,
    chords: Sequence[Sequence[Span]] | None = None,
) -> list[Job]:
    """One :class:`Job` per melody (arguments as in :func:`accompany`): its notes, chords
    and bar lines, its primer as the accompaniment so far, and how far that reaches."""
    jobs = []
    for i, (notes, bar_starts, num_steps) in enumerate(melodies):
        bars = sorted(int(b) for b in bar_starts) or [0]  # no bar lines: one bar from step 0
        # A primer (ground-truth notes) is kept as it is; generation starts after its
        # last onset, or after its last note's end when that comes later.
        primer = normalize_notes(primers[i]) if primers else []
        position = max((n.start for n in primer), default=0)
        if primer:
            position = max(position, max(n.end for n in primer))
        known = list(chords[i]) if chords else []  # no chords: all-zero harmony tables
        jobs.append(
            Job(list(notes), known, bars, int(num_steps), list(primer), min(position, num_steps))
        )
    return jobs


def next_window(job: Job, window: WindowConfig, config: models.ModelConfig) -> Window:
    """The window that continues ``job`` from its position: where it starts and ends, and
    its melody, primer, harmony table and bar lines as the model reads them."""
    # Windowing: start at the bar line at or before the position, stepped back by
    # ``overlap_bars`` bars (after the first window) whose notes prime the decoder.
    first_bar = _bar_at_or_before(job.bar_starts, job.position)
    first_bar = max(0, first_bar - (window.overlap_bars if job.position > 0 else 0))
    # The window ends ``window.bars`` bars after that bar line (or at the melody's end).
    last_bar = first_bar + window.bars
    # Primer budget: half the decoder's tokens (the rest for the new bars); where the
    # overlap needs more, a later first bar (the window ends where it would).
    budget = config.accompaniment_length // 2
    if job.position > 0:
        first_bar = _first_bar_within(job, first_bar, budget)
    # Origin: the window's step 0 (the model reads every time from it): its first
    # bar line, or step 0 for the first window.
    origin = job.bar_starts[first_bar] if job.position > 0 else 0
    # A model without bar lines counts beats from the origin: start before a
    # pickup of part of a beat so that the first full bar falls on a beat.
    if first_bar == 0 and not config.meter:
        origin -= _pickup_lead(job.bar_starts)
    # The window's end, at least one step past the position: every pass makes progress.
    end = job.bar_starts[last_bar] if last_bar < len(job.bar_starts) else job.num_steps
    end = max(min(end, job.num_steps), job.position + 1)
    # The encoder's input: the window's melody notes, in tokens from the origin.
    melody_ids = TOKENIZER.encode(notes_in(job.melody, origin, end))[: config.melody_length]
    # Primer tokens: the final accompaniment from the origin to the position (the
    # overlap bars), within the budget.
    context = notes_in(job.notes, origin, job.position)
    primer_ids = primer_tokens(context, job.position - origin, budget)
    # Harmony table (one row of chord tones per beat) and bar lines, both counted
    # from the origin: what the model reads of the window's chords and meter.
    return Window(
        origin=origin,
        end=end,
        melody_ids=melody_ids,
        primer_ids=primer_ids,
        harmony_table=harmony.beat_table(job.chords, end - origin, origin=origin),
        bar_lines=[b - origin for b in job.bar_starts if origin <= b < end],
    )


def _first_bar_within(job: Job, first_bar: int, budget: int) -> int:
    """The earliest bar line from ``first_bar`` on whose accompaniment up to the job's
    position fits ``budget`` primer tokens: whole bars are left out at the start rather
    than the latest notes at the end (those that the new bars continue). The last bar
    before the position is kept even where it alone needs more (:func:`primer_tokens`
    then drops its latest events)."""
    last = _bar_at_or_before(job.bar_starts, job.position - 1)
    while first_bar < last:
        start = job.bar_starts[first_bar]
        tokens = TOKENIZER.encode(notes_in(job.notes, start, job.position))
        rest = TOKENIZER.shift_tokens(job.position - start - TOKENIZER.duration_steps(tokens))
        if len(tokens) + len(rest) <= budget:
            break
        first_bar += 1
    return first_bar


def window_arrays(windows: Sequence[Window], melody_length: int) -> dict[str, Any]:
    """The windows as the decoder takes them, one row each: ``melody`` (padded token ids),
    ``primers``, ``limits`` (each window's length in steps), ``harmony_tables`` and
    ``bar_tables``. ``melody_length``: the model's encoder length in tokens. Tables are
    padded to a multiple of TABLE_BEATS beats and BAR_BUCKET bars, melodies to a multiple
    of MELODY_BUCKET tokens: few distinct shapes, few compilations."""
    tables = [win.harmony_table for win in windows]
    beats = -(-max(len(t) for t in tables) // TABLE_BEATS) * TABLE_BEATS
    return {
        "melody": pad_melodies([win.melody_ids for win in windows], melody_length),
        "primers": [win.primer_ids for win in windows],
        "limits": [win.end - win.origin for win in windows],
        "harmony_tables": harmony.pad_tables(tables, beats),
        "bar_tables": models.pad_bar_lines([win.bar_lines for win in windows], multiple=BAR_BUCKET),
    }


def decode_windows(
    decoder: CachedDecoder, windows: Sequence[Window], melody_length: int, repeat: int = 1
) -> list[list[int]]:
    """The new tokens of every window (after its primer), from one batched, compiled
    sampling loop over :func:`window_arrays`; no time shift may pass a window's end.
    ``repeat``: the windows come in groups of that many alike (a window's candidates)."""
    arrays = window_arrays(windows, melody_length)
    return decoder.decode(arrays["melody"], arrays["primers"], arrays["limits"], repeat=repeat,
                          harmony_tables=arrays["harmony_tables"], bar_tables=arrays["bar_tables"])


def keep_new_notes(
    job: Job,
    win: Window,
    tokens: Sequence[int],
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
) -> list[Note]:
    """The notes that a window's new ``tokens`` add to ``job``: those that begin after
    the primer and before the melody's end, in absolute steps, cut at the melody's end,
    and released as :func:`accompany` says (``release``, ``hanging_beats``)."""
    # Tokens back into notes, primer included (so that a note-off in the new
    # tokens can end a note the primer began); flags mark notes never ended.
    notes, hanging = TOKENIZER.decode_hanging([*win.primer_ids, *tokens])
    start_of_new = win.origin + TOKENIZER.duration_steps(win.primer_ids)
    # Keep only the notes that begin after the primer (the primer's notes are
    # already in ``job.notes``), in absolute steps, cut at the melody's end.
    fresh, fresh_hanging = [], []
    for note, open_end in zip(notes, hanging):
        end = min(note.end + win.origin, job.num_steps)
        absolute = Note(note.start + win.origin, end, note.pitch, note.velocity)
        if max(start_of_new, 0) <= absolute.start < job.num_steps:
            fresh.append(absolute)
            fresh_hanging.append(open_end)
    # Hanging-note release: lift notes at chord changes and after at most
    # ``hanging_beats`` beats when the decoder never ended them.
    if release:
        fresh = release_notes(fresh, job.chords, hanging=fresh_hanging,
                              hanging_beats=hanging_beats, table=job.chord_table())
    return fresh


def advance_position(job: Job, win: Window, tokens: Sequence[int], token_budget: int) -> int:
    """The step up to which ``job`` is final after this window: the window's end, or,
    when the window's primer and new ``tokens`` filled the decoder's ``token_budget``
    (its ``accompaniment_length``) before that end, where the decoder got to."""
    if len(win.primer_ids) + len(tokens) + 1 < token_budget:
        return win.end
    # Token budget exhausted before the window's end: continue from where the decoder
    # got to (at least one bar on, so that generation progresses).
    reached = (
        win.origin + TOKENIZER.duration_steps(win.primer_ids) + TOKENIZER.duration_steps(tokens)
    )
    next_bar = _bar_at_or_before(job.bar_starts, job.position) + 1
    floor = job.bar_starts[next_bar] if next_bar < len(job.bar_starts) else win.end
    return min(max(reached, floor), job.num_steps)


def accompany_melodies(
    model: models.AccompanimentModel,
    melodies: Sequence[Melody],
    sampling: SamplingConfig = SamplingConfig(),
    window: WindowConfig = WindowConfig(),
    chords: Sequence[Sequence[Span]] | None = None,
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
    compound: str = DEFAULT_COMPOUND,
    decoder: CachedDecoder | None = None,
    candidates: int = DEFAULT_CANDIDATES,
    reranker: Reranker | None = None,
) -> list[list[Note]]:
    """Accompaniment of melodies read from MIDI files (:func:`~pianoacc_utils.data.load_melody`).

    As :func:`accompany`, with ``chords`` and the result in each melody's own steps.
    Bars in a compound meter (6/8, 9/8, 12/8, ...) are accompanied through the swing
    map of :mod:`~pianoacc_utils.data.compound` (``compound="swing"``, the default) or as
    they are (``"plain"``); a melody in simple meters is accompanied exactly as by
    :func:`accompany`.
    """
    maps = [compound_meter.melody_time_map(melody, compound) for melody in melodies]
    jobs = [
        (
            time_map.notes_to_model(melody.notes),
            [int(b) for b in time_map.to_model(melody.grid.bar_starts)],
            int(time_map.to_model([melody.end_step])[0]),
        )
        for melody, time_map in zip(melodies, maps)
    ]
    known = None
    if chords is not None:
        known = [time_map.spans_to_model(spans) for time_map, spans in zip(maps, chords)]
    results = accompany(
        model, jobs, sampling, window, decoder=decoder, chords=known, release=release,
        hanging_beats=hanging_beats, candidates=candidates, reranker=reranker,
    )
    moved = []
    for melody, time_map, notes in zip(melodies, maps, results):
        end = int(melody.end_step)  # rounding may carry a last note a step past the melody
        moved.append(
            [n._replace(end=min(n.end, end))
             for n in time_map.notes_to_melody(notes) if n.start < end]
        )
    return moved


def accompany_segment(
    model: models.AccompanimentModel,
    segments: Sequence[Segment],
    sampling: SamplingConfig = SamplingConfig(),
    window: WindowConfig = WindowConfig(),
    primer_tokens: int = 0,
    decoder: CachedDecoder | None = None,
    chords: str = "annotated",
    release: bool = DEFAULT_RELEASE,
    hanging_beats: float = HANGING_BEATS,
    candidates: int = DEFAULT_CANDIDATES,
    reranker: Reranker | None = None,
) -> list[list[Note]]:
    """Accompany POP909 segments; ``primer_tokens`` > 0 keeps that many ground-truth
    accompaniment tokens as a primer (0: from the melody alone). ``chords``: one of
    :data:`CHORD_SOURCES` (``"annotated"``: the segment's chords, moved with its
    ``transpose``); ``release``, ``hanging_beats``, ``candidates`` and ``reranker`` as in
    :func:`accompany`."""
    primers = None
    if primer_tokens > 0:
        primers = [
            TOKENIZER.decode(TOKENIZER.encode(seg.accompaniment)[:primer_tokens])
            for seg in segments
        ]
    melodies = [(seg.melody, seg.bar_starts, seg.num_steps) for seg in segments]
    return accompany(
        model, melodies, sampling, window, primers, decoder,
        chords=[segment_chords(seg, chords) for seg in segments], release=release,
        hanging_beats=hanging_beats, candidates=candidates, reranker=reranker,
    )


def segment_chords(seg: Segment, source: str = "annotated") -> list[Span]:
    """The chords a segment is accompanied with, from ``source`` (:data:`CHORD_SOURCES`)."""
    if source not in CHORD_SOURCES:
        raise PianoaccError(f"chords {source!r}: expected one of {', '.join(CHORD_SOURCES)}")
    if source == "annotated":
        return harmony.transpose_spans(seg.chords, seg.transpose)
    if source == "estimated":
        return harmony.learned_chords(seg.melody, seg.bar_starts, seg.num_steps)
    return []
