"""Prepared token arrays: POP909 songs -> segments -> token ids, per split, cached.

``prepare`` runs the data and tokenizer stages over the whole dataset once (in
parallel over songs) and stores, per split, ragged token arrays in ``<split>.npz``:
``melody_tokens``/``melody_offsets`` and ``accompaniment_tokens``/``accompaniment_offsets``
(sequence ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``, no START/END, no padding),
plus ``song_id``, ``first_bar``, ``num_steps`` and ``transpose`` per sequence, and
the annotated chords as ragged harmony tables ``harmony``/``harmony_offsets`` (one
row of :data:`~pianoacc_utils.harmony.HARMONY_DIM` 0/1 values per beat, transposed
with the notes; see :mod:`pianoacc_utils.harmony`), and the bar lines
``bars``/``bars_offsets`` (steps where each of the sequence's bars starts).
Models choose their own lengths when they batch these (:mod:`pianoacc_utils.training.batches`
adds START/END and the padding).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pianoacc_utils import data, harmony
from pianoacc_utils.common import (
    PianoaccError,
    cache_dir,
    config_dict,
    config_hash,
    file_lock,
    worker_processes,
    write_json,
)
from pianoacc_utils.defaults import REBAR_METERS
from pianoacc_utils.tokenizer import EventTokenizer

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class PrepareConfig:
    """How songs become training sequences. Saved as ``config.json`` beside the arrays.

    ``max_tokens`` is the model length used for the "too long" counts only: arrays
    keep whole sequences. ``transpositions`` (semitones) apply to the train split only.
    ``songs`` limits the dataset to its first N songs (``None``: all), for quick runs.
    ``rebar_3_4``/``rebar_2_4``: shares of the train split's segments whose four-beat
    bars are turned into 3/4 or 2/4 (:func:`pianoacc_utils.data.rebar`), each segment
    drawn once, the same way on every run (:func:`segment_meter`).
    """

    bars_per_segment: int = 32
    hop_bars: int = 32
    min_bars: int = 4
    transpositions: tuple[int, ...] = (0,)
    max_tokens: int = 1024
    songs: int | None = None
    split_seed: int = data.SPLIT_SEED
    rebar_3_4: float = 0.0
    rebar_2_4: float = 0.0
    version: int = field(default=3)

    def __post_init__(self) -> None:
        shares = (self.rebar_3_4, self.rebar_2_4)
        if min(shares) < 0 or sum(shares) > 1:
            raise PianoaccError(f"rebar shares {shares}: each at least 0, together at most 1")


@dataclass
class PreparedSplit:
    """One split's ragged token arrays (see the module docstring)."""

    melody_tokens: np.ndarray
    melody_offsets: np.ndarray
    accompaniment_tokens: np.ndarray
    accompaniment_offsets: np.ndarray
    song_id: np.ndarray
    first_bar: np.ndarray
    num_steps: np.ndarray
    transpose: np.ndarray
    harmony: np.ndarray
    harmony_offsets: np.ndarray
    bars: np.ndarray
    bars_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.song_id)

    def melody(self, i: int) -> np.ndarray:
        """Melody token ids of sequence ``i`` (int16, no START/END)."""
        return self.melody_tokens[self.melody_offsets[i] : self.melody_offsets[i + 1]]

    def accompaniment(self, i: int) -> np.ndarray:
        """Accompaniment token ids of sequence ``i`` (int16, no START/END)."""
        return self.accompaniment_tokens[
            self.accompaniment_offsets[i] : self.accompaniment_offsets[i + 1]
        ]

    def harmony_table(self, i: int) -> np.ndarray:
        """Harmony table ``(beats, 24)`` float32 of sequence ``i``."""
        rows = self.harmony[self.harmony_offsets[i] : self.harmony_offsets[i + 1]]
        return rows.astype(np.float32)

    def bar_lines(self, i: int) -> np.ndarray:
        """Bar starts (steps from the segment start) of sequence ``i``, int32."""
        return self.bars[self.bars_offsets[i] : self.bars_offsets[i + 1]].astype(np.int32)

    def lengths(self, part: str) -> np.ndarray:
        """Token count of every melody (``part="melody"``) or accompaniment sequence."""
        return np.diff(getattr(self, f"{part}_offsets"))


def _ragged(sequences: list[list[int]], dtype: Any = np.int16) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in sequences])
    flat = np.fromiter((t for s in sequences for t in s), dtype=dtype, count=int(offsets[-1]))
    return flat, offsets


def segment_meter(config: PrepareConfig, song_id: str, first_bar: int) -> str:
    """The meter (:data:`~pianoacc_utils.defaults.REBAR_METERS`) a train segment is given.

    Drawn from a hash of the split seed, song and first bar, so that it does not
    depend on the order in which worker processes see the songs."""
    draw = zlib.crc32(f"{config.split_seed}/{song_id}/{first_bar}".encode()) / 2**32
    if draw < config.rebar_3_4:
        return "3/4"
    if draw < config.rebar_3_4 + config.rebar_2_4:
        return "2/4"
    return "4/4"


def _song_sequences(job: tuple[str, str, PrepareConfig, bool]) -> dict:
    """Worker: one song -> its token sequences, or the reason it was skipped."""
    song_id, root, config, augment = job
    tokenizer = EventTokenizer()
    try:
        song = data.load_song(song_id, root=Path(root))
    except PianoaccError as error:
        return {"song_id": song_id, "skipped": str(error)}
    rows = []
    for seg in data.segment(song, config.bars_per_segment, config.hop_bars, config.min_bars):
        meter = segment_meter(config, song_id, seg.first_bar) if augment else "4/4"
        seg = data.rebar(seg, meter)
        for semitones in config.transpositions if augment else (0,):
            moved = data.transpose(seg, semitones)
            if moved is None:
                continue
            rows.append(
                (
                    tokenizer.encode(moved.melody),
                    tokenizer.encode(moved.accompaniment),
                    seg.first_bar,
                    seg.num_steps,
                    semitones,
                    harmony.transpose_table(
                        harmony.beat_table(seg.chords, seg.num_steps), semitones
                    ).astype(np.uint8),
                    list(seg.bar_starts),
                    meter,
                )
            )
    if not rows:
        return {"song_id": song_id, "skipped": "no segment with a melody"}
    return {"song_id": song_id, "rows": rows}


def prepared_dir(config: PrepareConfig) -> Path:
    """Default cache folder of a configuration (named by its hash)."""
    return cache_dir() / "prepared" / config_hash(config)


def prepare(
    config: PrepareConfig = PrepareConfig(),
    out: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Build (or reuse) the prepared arrays for ``config``; returns their folder.

    Reuses the folder when its ``config.json`` equals ``config``; rebuilds otherwise.
    Writes ``stats.json`` with songs, segments and tokens per split, how many
    sequences exceed ``config.max_tokens``, the skipped songs with reasons, and
    the wall time.
    """
    out_dir = Path(out) if out else prepared_dir(config)
    # Another process preparing the same folder finishes first; this one then reuses it.
    with file_lock(out_dir.parent / f".{out_dir.name}.lock"):
        return _prepare(config, out_dir, workers, progress, force)


def _prepare(
    config: PrepareConfig, out_dir: Path, workers: int | None, progress: bool, force: bool
) -> Path:
    from tqdm.auto import tqdm

    wanted = config_dict(config)
    config_path = out_dir / "config.json"
    if not force and config_path.is_file() and (out_dir / "stats.json").is_file():
        if json.loads(config_path.read_text()) == wanted:
            return out_dir
    began = time.perf_counter()
    root = data.find_pop909_dir()
    ids = data.song_ids(root)
    if config.songs is not None:
        ids = ids[: config.songs]
    splits = data.split_songs(data.song_ids(root), seed=config.split_seed)
    split_of = {song_id: name for name, members in splits.items() for song_id in members}
    jobs = [(song_id, str(root), config, split_of[song_id] == "train") for song_id in ids]
    workers = workers or min(len(jobs), os.cpu_count() or 1) or 1
    results = []
    if workers > 1:
        with worker_processes(workers) as pool:
            mapped = pool.map(_song_sequences, jobs, chunksize=8)
            results = list(tqdm(mapped, total=len(jobs), desc="prepare", disable=not progress))
    else:
        for job in tqdm(jobs, desc="prepare", disable=not progress):
            results.append(_song_sequences(job))

    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict = {"splits": {}, "skipped": {}, "max_tokens": config.max_tokens}
    for name in SPLITS:
        rows = []
        songs = 0
        for result in results:
            if split_of[result["song_id"]] != name:
                continue
            if "skipped" in result:
                stats["skipped"][result["song_id"]] = result["skipped"]
                continue
            songs += 1
            rows += [(result["song_id"], *row) for row in result["rows"]]
        melody_tokens, melody_offsets = _ragged([r[1] for r in rows])
        acc_tokens, acc_offsets = _ragged([r[2] for r in rows])
        arrays = dict(
            melody_tokens=melody_tokens,
            melody_offsets=melody_offsets,
            accompaniment_tokens=acc_tokens,
            accompaniment_offsets=acc_offsets,
            song_id=np.array([r[0] for r in rows], dtype="U8"),
            first_bar=np.array([r[3] for r in rows], dtype=np.int32),
            num_steps=np.array([r[4] for r in rows], dtype=np.int32),
            transpose=np.array([r[5] for r in rows], dtype=np.int8),
            harmony=np.concatenate(
                [r[6] for r in rows] or [np.zeros((0, harmony.HARMONY_DIM), np.uint8)]
            ),
            harmony_offsets=np.concatenate(
                [[0], np.cumsum([len(r[6]) for r in rows], dtype=np.int64)]
            ).astype(np.int64),
        )
        arrays["bars"], arrays["bars_offsets"] = _ragged([r[7] for r in rows], np.int32)
        tmp = out_dir / f".{name}.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, out_dir / f"{name}.npz")
        melody_lengths, acc_lengths = np.diff(melody_offsets), np.diff(acc_offsets)
        # +1 for START (decoder input) or END (target): what the model actually sees.
        stats["splits"][name] = {
            "songs": songs,
            "segments": len(rows),
            "melody_tokens": int(melody_lengths.sum()),
            "accompaniment_tokens": int(acc_lengths.sum()),
            "melody_over_max": int((melody_lengths > config.max_tokens).sum()),
            "accompaniment_over_max": int((acc_lengths + 1 > config.max_tokens).sum()),
        }
        if name == "train":
            meters = [r[8] for r in rows]
            stats["splits"][name]["meters"] = {m: meters.count(m) for m in REBAR_METERS}
    stats["seconds"] = round(time.perf_counter() - began, 2)
    stats["workers"] = workers
    write_json(out_dir / "stats.json", stats)
    write_json(config_path, wanted)
    return out_dir


def load_split(folder: str | Path, split: str) -> PreparedSplit:
    """Read one split's arrays from a folder written by :func:`prepare`."""
    path = Path(folder) / f"{split}.npz"
    if not path.is_file():
        raise PianoaccError(f"{path}: no prepared split here; run `pianoacc prepare` first")
    with np.load(path) as arrays:
        return PreparedSplit(**{name: arrays[name] for name in arrays.files})


def load_stats(folder: str | Path) -> dict:
    """The ``stats.json`` written by :func:`prepare`."""
    return json.loads((Path(folder) / "stats.json").read_text())


def load_config(folder: str | Path) -> PrepareConfig:
    """The :class:`PrepareConfig` a prepared folder was built with."""
    values = json.loads((Path(folder) / "config.json").read_text())
    values["transpositions"] = tuple(values["transpositions"])
    return PrepareConfig(**values)
