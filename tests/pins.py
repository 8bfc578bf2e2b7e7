"""Behaviour pins: numbers that a pure reorganisation of the package must leave unchanged.

``compute_pins()`` prepares the arrays of a small song set, generates accompaniments
with both shipped models for a fixed melody and a fixed POP909 segment at a fixed
seed, and scores one segment; ``tests/test_pins.py`` compares the result with the
committed ``tests/fixtures/pins.json``. Regenerate that file (``python tests/pins.py``)
only when behaviour is meant to change, and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

PINS_PATH = Path(__file__).parent / "fixtures" / "pins.json"
PREPARE_SONGS = 12
"""The first songs of POP909 that the prepared-array pin covers (all three splits)."""
SEGMENT_SONG = "186"
"""A test-split song with irregular bars: its first segment is accompanied and scored."""


def _array_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _rounded(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else round(float(v), 9)) for k, v in metrics.items()}


def prepared_pin(folder: Path) -> dict[str, str]:
    """sha256 of each split's prepared arrays for the first :data:`PREPARE_SONGS` songs,
    with transpositions and both re-bar shares switched on."""
    from pianoacc_utils.prepare import PrepareConfig, load_split, prepare

    config = PrepareConfig(
        songs=PREPARE_SONGS, transpositions=(0, 3), rebar_3_4=0.3, rebar_2_4=0.3
    )
    out = prepare(config, out=folder, workers=1, progress=False)
    pins = {}
    for split in ("train", "validation", "test"):
        if (out / f"{split}.npz").is_file():
            pins[split] = _array_digest(vars(load_split(out, split)))
    return pins


def generation_pins(folder: Path) -> dict[str, object]:
    """Tokens that each shipped model generates (seed 0, default sampling) for the
    first segment of :data:`SEGMENT_SONG` (annotated chords) and for the example
    melody (chords estimated from it), and the segment's metrics."""
    from pianoacc_utils.data import example_melody, load_melody, load_song, segment
    from pianoacc_utils.evaluation import block_chord_baseline, segment_metrics
    from pianoacc_utils.generation import (
        SamplingConfig,
        accompany_melodies,
        accompany_segment,
        load_checkpoint,
    )
    from pianoacc_utils.harmony import estimate_chords
    from pianoacc_utils.tokenizer import EventTokenizer

    tokenizer = EventTokenizer()
    song = load_song(SEGMENT_SONG)
    seg = segment(song)[0]
    melody = load_melody(example_melody(folder / "example.mid"))
    pins: dict[str, object] = {
        "segment_ground_truth": _rounded(segment_metrics(seg, seg.accompaniment)),
        "segment_block_chords": _rounded(segment_metrics(seg, block_chord_baseline(seg))),
    }
    chords = [estimate_chords(melody.notes, melody.grid.bar_starts, melody.end_step)]
    for name in ("fnet", "transformer"):
        model, window = load_checkpoint(name)
        sampling = SamplingConfig(seed=0)
        notes = accompany_segment(model, [seg], sampling, window)[0]
        pins[f"{name}_segment_tokens"] = tokenizer.encode(notes)
        pins[f"{name}_segment_metrics"] = _rounded(segment_metrics(seg, notes))
        notes = accompany_melodies(model, [melody], sampling, window, chords=chords)[0]
        pins[f"{name}_melody_tokens"] = tokenizer.encode(notes)
    return pins


def compute_pins() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        return {
            "prepared": prepared_pin(folder / "prepared"),
            **generation_pins(folder),
        }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Compute the behaviour pins and write them.")
    parser.add_argument("out", nargs="?", type=Path, default=PINS_PATH,
                        help="where to write them (default: tests/fixtures/pins.json)")
    target = parser.parse_args().out
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pins = compute_pins()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}")
