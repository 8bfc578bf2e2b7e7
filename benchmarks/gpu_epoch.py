"""Epoch time of the ``full`` profile on a GPU: training steps timed, an epoch extrapolated.

The ``full`` profile's model (``training.PROFILES["full"]``: FNet unless ``--kind``, its
batch size) trains on random token batches of fixed padded lengths under JAX
(``KERAS_BACKEND=jax``, set here unless given: the GPU machine has no TensorFlow), in
float32 and with ``keras.mixed_precision.set_global_policy("mixed_bfloat16")``
(``--precisions``; ``mixed_float16`` is the profile's own GPU setting). After
``--warmup`` untimed steps (the first compiles), ``--steps`` steps are timed: median,
fastest and slowest step; throughput counts target tokens per second. An epoch is
extrapolated as ``ceil(train segments / batch size)`` steps at the median step time,
and the profile's whole run as its epochs of those (validation not counted).

The lengths and the segment count come from ``benchmarks/results/full_profile_segments.json``
(``--count``, on a machine with POP909: every training segment of the profile counted,
transpositions included, and the token lengths of its untransposed 4/4 windows): steps
are timed at the median padded length of a segment and at the profile's maximum
lengths. Without that file, at the maximum lengths and with ``--segments``.

Usage::

    python benchmarks/gpu_epoch.py                  # on the GPU: float32 and bf16, a few minutes
    python benchmarks/gpu_epoch.py --precisions mixed_bfloat16 mixed_float16 --steps 50
    python benchmarks/gpu_epoch.py --count          # CPU + POP909: the segment file, minutes
    python benchmarks/gpu_epoch.py --tiny --out /tmp/smoke   # CPU smoke test, seconds

Writes ``benchmarks/results/gpu_epoch_<device>.json`` (``--out`` folder; ``<device>``
from JAX's device kind, e.g. ``nvidia_h200``; ``--tiny`` writes ``gpu_epoch_tiny_cpu.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from machine import load_average, processor, versions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
SEGMENTS_FILE = RESULTS / "full_profile_segments.json"
PRECISIONS = ("float32", "mixed_bfloat16")
LENGTH_MULTIPLE = 64
"""Padded lengths are rounded up to this many tokens (the full profile's ``length_multiple``)."""

TINY = {
    "model": {"melody_length": 32, "accompaniment_length": 64, "hidden_dim": 16, "num_heads": 2,
              "intermediate_dim": 32, "encoder_layers": 1, "decoder_layers": 1},
    "batch_size": 2, "segments": 10, "epochs": 2,
}
"""The ``--tiny`` configuration: a model small enough to compile and train in seconds on a CPU."""


def device_name() -> str:
    """JAX's first device kind as a file-name slug (``nvidia_h200``, ``cpu``)."""
    import jax

    kind = jax.devices()[0].device_kind
    return re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_") or "device"


def count_segments() -> dict:
    """The full profile's training segments, as ``prepare`` would make them, counted
    without tokenizing every transposition: each 32-bar window (hop 16) of a training
    song, times the transpositions that keep every note on the piano; token lengths
    (START or END included) of each untransposed window in 4/4."""
    import pianoacc_utils  # noqa: F401
    from pianoacc_utils import data
    from pianoacc_utils.common import config_dict
    from pianoacc_utils.tokenizer import EventTokenizer
    from pianoacc_utils.training import PROFILES

    config = PROFILES["full"].prepare
    tokenizer = EventTokenizer()
    root = data.find_pop909_dir()
    train = data.split_songs(data.song_ids(root), seed=config.split_seed)["train"]
    segments, melody, accompaniment, skipped = 0, [], [], 0
    for song_id in train:
        try:
            song = data.load_song(song_id, root=root)
        except Exception:  # noqa: BLE001  (prepare skips such songs too)
            skipped += 1
            continue
        for seg in data.segment(song, config.bars_per_segment, config.hop_bars, config.min_bars):
            segments += sum(data.transpose(seg, s) is not None for s in config.transpositions)
            melody.append(len(tokenizer.encode(seg.melody)))
            accompaniment.append(len(tokenizer.encode(seg.accompaniment)) + 1)

    def spread(values: list[int]) -> dict:
        return {f"p{q}": int(np.percentile(values, q)) for q in (10, 50, 90)} | {
            "mean": round(float(np.mean(values)), 1), "max": int(max(values))}

    return {
        "profile": "full", "prepare": config_dict(config),
        "train_songs": len(train) - skipped, "skipped_songs": skipped,
        "train_segments": segments, "windows": len(melody),
        "melody_tokens": spread(melody), "accompaniment_tokens": spread(accompaniment),
    }


def padded(tokens: int, limit: int, multiple: int = LENGTH_MULTIPLE) -> int:
    """``tokens`` rounded up to ``multiple``, at most ``limit``."""
    return min(limit, -(-tokens // multiple) * multiple)


def time_precision(model_config, train_config, precision: str, lengths: tuple[int, int],
                   batch_size: int, warmup: int, steps: int) -> dict:
    """Median, fastest and slowest training step on one random batch of ``lengths``
    (melody, accompaniment tokens) in ``precision``."""
    import keras

    from pianoacc_utils.models import build_model, count_parameters
    from pianoacc_utils.training import compile_model

    # Random weights are fine for timing; keras.utils.set_random_seed would import
    # TensorFlow whenever it is installed, seconds of a CPU smoke run.
    keras.mixed_precision.set_global_policy(precision)
    model = compile_model(build_model(model_config), train_config)
    rng = np.random.default_rng(0)
    vocabulary = model_config.vocabulary_size
    inputs = {
        "melody": rng.integers(3, vocabulary, (batch_size, lengths[0])).astype("int32"),
        "decoder_input": rng.integers(3, vocabulary, (batch_size, lengths[1])).astype("int32"),
    }
    target = rng.integers(3, vocabulary, (batch_size, lengths[1])).astype("int32")
    began = time.perf_counter()
    for _ in range(warmup):  # train_on_batch returns host numbers: it waits for the device
        model.train_on_batch(inputs, target)
    warmup_seconds = time.perf_counter() - began
    walls = []
    for _ in range(steps):
        began = time.perf_counter()
        model.train_on_batch(inputs, target)
        walls.append(time.perf_counter() - began)
    keras.mixed_precision.set_global_policy("float32")
    median = statistics.median(walls)
    return {
        "precision": precision, "melody_tokens": lengths[0], "accompaniment_tokens": lengths[1],
        "parameters": count_parameters(model)["total"], "warmup_seconds": round(warmup_seconds, 2),
        "steps": steps, "step_seconds_median": round(median, 5),
        "step_seconds_min": round(min(walls), 5), "step_seconds_max": round(max(walls), 5),
        "tokens_per_second": round(batch_size * lengths[1] / median, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--kind", default="fnet", choices=("fnet", "transformer"))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--segments", type=int, help="training segments of an epoch")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU (smoke test)")
    parser.add_argument("--count", action="store_true", help=f"write {SEGMENTS_FILE.name} (POP909)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    if args.count:
        counted = count_segments()
        (args.out / SEGMENTS_FILE.name).write_text(json.dumps(counted, indent=1) + "\n")
        print(json.dumps(counted, indent=1))
        return 0

    import dataclasses

    import keras

    import pianoacc_utils  # noqa: F401  (registers the model classes)
    from pianoacc_utils.training import PROFILES

    profile = PROFILES["full"]
    model_config = profile.model_config(args.kind)
    batch_size, epochs, counts = profile.train.batch_size, profile.train.epochs, None
    if args.tiny:
        model_config = dataclasses.replace(model_config, **TINY["model"])
        batch_size, epochs, segments = TINY["batch_size"], TINY["epochs"], TINY["segments"]
        source = "tiny configuration"
        lengths = [(model_config.melody_length, model_config.accompaniment_length)]
    else:
        if SEGMENTS_FILE.is_file():
            counts = json.loads(SEGMENTS_FILE.read_text())
        segments = args.segments or (counts["train_segments"] if counts else None)
        if segments is None:
            parser.error(f"no {SEGMENTS_FILE}: give --segments (training segments of an epoch)")
        source = "--segments" if args.segments else str(SEGMENTS_FILE.relative_to(ROOT))
        lengths = [(model_config.melody_length, model_config.accompaniment_length)]
        if counts:
            melody, accompaniment = (counts[f"{part}_tokens"]["p50"]
                                     for part in ("melody", "accompaniment"))
            lengths.insert(0, (padded(melody, model_config.melody_length),
                               padded(accompaniment, model_config.accompaniment_length)))
    device = "tiny_cpu" if args.tiny else device_name()
    steps_per_epoch = math.ceil(segments / batch_size)
    rows = []
    for precision in args.precisions:
        for pair in lengths:
            row = time_precision(model_config, profile.train, precision, pair, batch_size,
                                 args.warmup, args.steps)
            row["epoch_seconds"] = round(steps_per_epoch * row["step_seconds_median"], 1)
            row["run_hours"] = round(epochs * row["epoch_seconds"] / 3600, 2)
            rows.append(row)
            print(f"{precision:<16}{pair[0]:>5}/{pair[1]:<5}"
                  f"{row['step_seconds_median']:9.4f} s/step {row['tokens_per_second']:10.0f} "
                  f"tokens/s  epoch {row['epoch_seconds']:8.1f} s", flush=True)
    payload = {
        "device": device, "jax_devices": [str(d.device_kind) for d in _devices()],
        "backend": keras.config.backend(), "profile": "tiny" if args.tiny else "full",
        "kind": args.kind, "batch_size": batch_size, "epochs": epochs,
        "train_segments": segments, "segments_from": source, "steps_per_epoch": steps_per_epoch,
        "epoch_lengths_note": "first row per precision: the median segment's padded lengths; "
        "second: the profile's maximum lengths" if len(lengths) > 1 else "one length pair",
        "machine": {"processor": processor(), "load_average": load_average(), **versions()},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_epoch_{device}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


def _devices() -> list:
    import jax

    return jax.devices()


if __name__ == "__main__":
    sys.exit(main())
