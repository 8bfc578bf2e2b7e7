"""Behaviour pins: what a reorganisation of the package must leave unchanged, pinned so
that it holds on every processor.

Float kernels (oneDNN, XLA, JAX) add in another order on another processor: a logit
moves in its last bits, a seeded sampler then draws another token at one step, and every
later token differs. So a sampled accompaniment is no pin. What is pinned instead:

* **exact**: the prepared arrays of a small song set (sha256), which hold integers and
  chord rows of 0 and 1, and the metrics of fixed notes (NumPy, to a relative
  :data:`METRIC_TOLERANCE`);
* **to a tolerance**: each shipped model's teacher-forced loss and logits on the first
  window of a fixed POP909 segment (:data:`LOGIT_TOLERANCE`, :data:`LOSS_TOLERANCE`);
* **greedy decoding with the chord mask**, compared token by token only while the chosen
  token led its runner-up by more than :data:`MARGIN_TOLERANCE` when pinned: past the
  first closer call another processor may rightly choose the other token;
* **the sampling rule as statistics**: thousands of draws of the default sampler from the
  teacher-forced logits, velocity temperature and chord mask applied as in generation
  (the share of draws that are the pianist's token, their mean log-probability, the
  share of note-ons inside the chord, the spread of velocities), each to a tolerance far
  wider than a few flipped draws and far narrower than a changed default;
* **sampled accompaniments as means over samples**: metrics of the whole segment
  accompanied :data:`SAMPLES` times, each mean to a tolerance of several standard errors.

``tests/test_pins.py`` compares :func:`compute_pins` with the committed
``tests/fixtures/pins.json`` through :func:`pin_differences`. Regenerate that file
(``python tests/pins.py``) only when behaviour is meant to change, and say why in the
commit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PINS_PATH = Path(__file__).parent / "fixtures" / "pins.json"
PREPARE_SONGS = 12
"""The first songs of POP909 that the prepared-array pin covers (all three splits)."""
SEGMENT_SONG = "186"
"""A test-split song with irregular bars: its first segment is accompanied and scored."""
MODELS = ("fnet", "transformer")

METRIC_TOLERANCE = 1e-6
"""Relative tolerance of metrics computed by NumPy from fixed notes."""
LOSS_TOLERANCE = 1e-4
"""Absolute tolerance (nats) of a teacher-forced loss (measured across kernels: 2e-7)."""
LOGIT_TOLERANCE = 1e-3
"""Absolute tolerance of a teacher-forced logit. The shipped models' logits differ by
about 1e-5 between TensorFlow with and without oneDNN and JAX (``tests/pins.py`` rounds
them to 1e-5): the tolerance is a hundred times that."""
MARGIN_TOLERANCE = 2e-3
"""Greedy tokens are compared while the pinned choice led its runner-up by more than this
(logits): twice :data:`LOGIT_TOLERANCE`, one for each of the two logits."""
MIN_TRUSTED_TOKENS = 40
"""A greedy pin must hold at least this many tokens before its first close call."""
DRAWS_PER_POSITION = 64
"""Draws of the sampler at each position of the teacher-forced window."""
SAMPLES = 4
"""Sampled accompaniments of the segment per model (one batch, one seed)."""
SAMPLED_METRICS = {
    # metric: absolute tolerance of its mean over SAMPLES accompaniments
    "notes_per_bar": 3.0,
    "polyphony": 0.3,
    "chord_tone_ratio": 0.03,
    "melody_consonance": 0.04,
    "bars_off_share": 0.06,
    "velocity_std": 6.0,
    "pitch_range": 4.0,
}
"""Tolerances of sampled means: about four standard errors of a mean over
:data:`SAMPLES` samples, from the spread across samples measured when pinned (in the
pin itself, ``std``); the transformer's velocity spread varies most (std 3.7)."""
SAMPLER_TOLERANCES = {
    "teacher_token_share": 0.02,
    "mean_log_probability": 0.04,
    "note_on_in_chord": 0.005,
    "velocity_share": 0.01,
    "velocity_bin_std": 0.15,
}
"""Absolute tolerances of the sampler statistics (each over thousands of draws: a few
flipped draws move a share by about 1e-4)."""


# --------------------------------------------------------------------------- exact pins


def _array_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else float(v)) for k, v in metrics.items()}


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


# --------------------------------------------------------------------------- model inputs


def pinned_segment():
    """The first 32-bar segment of :data:`SEGMENT_SONG`."""
    from pianoacc_utils.data import load_song, segment

    return segment(load_song(SEGMENT_SONG))[0]


def first_window(seg, window, config) -> dict[str, Any]:
    """The inputs of the segment's first window with its annotated chords, laid out by
    the generation code itself (``generation.plan_jobs``, ``next_window``,
    ``window_arrays``), and the pianist's tokens over it."""
    from pianoacc_utils.data.notes import notes_in
    from pianoacc_utils.generation import next_window, plan_jobs, segment_chords, window_arrays
    from pianoacc_utils.generation.sampling import TOKENIZER

    (job,) = plan_jobs(
        [(seg.melody, seg.bar_starts, seg.num_steps)], chords=[segment_chords(seg, "annotated")]
    )
    win = next_window(job, window, config)
    arrays = window_arrays([win], config.melody_length)
    return {
        "melody": arrays["melody"],
        "table": arrays["harmony_tables"],
        "bars": arrays["bar_tables"],
        "limit": arrays["limits"][0],
        "pianist": TOKENIZER.encode(notes_in(seg.accompaniment, win.origin, win.end)),
    }


def teacher_forced_logits(model, inputs: dict[str, Any], tokens: Sequence[int]) -> np.ndarray:
    """Logits ``(len(tokens) + 1, V)`` float64 of the model reading START + ``tokens``
    on the window: row ``t`` scores the token after the first ``t`` tokens."""
    from pianoacc_utils.generation.sampling import TOKENIZER

    length = model.config.accompaniment_length
    decoder_input = np.zeros((1, length), np.int32)
    sequence = [TOKENIZER.start_id, *tokens][:length]
    decoder_input[0, : len(sequence)] = sequence
    logits = model(
        {
            "melody": inputs["melody"].astype(np.int32),
            "harmony": inputs["table"],
            "bars": np.asarray(inputs["bars"], np.int32),
            "decoder_input": decoder_input,
        },
        training=False,
    )
    return np.asarray(logits, np.float64)[0, : len(sequence)]


def step_times(tokens: Sequence[int]) -> np.ndarray:
    """Grid steps reached after each of START + ``tokens``: where the token after it
    would sound (what the decoding loop calls ``now``)."""
    from pianoacc_utils.generation.sampling import SHIFT_STEPS, TOKENIZER

    return np.cumsum(SHIFT_STEPS[np.asarray([TOKENIZER.start_id, *tokens], np.int64)])


def generation_logits(logits: np.ndarray, tokens: Sequence[int], inputs: dict[str, Any],
                      sampling) -> np.ndarray:
    """The logits as the decoding loop hands them to the sampler
    (``generation.shape_logits``: velocity temperature, note-off bias, the window mask and,
    if ``sampling.chord_mask``, the chord mask)."""
    from keras import ops

    from pianoacc_utils.defaults import STEPS_PER_BEAT
    from pianoacc_utils.generation.sampling import chord_allowed, shape_logits

    now = step_times(tokens)[: len(logits)]
    values = ops.convert_to_tensor(logits.astype(np.float32))
    permitted = None
    if sampling.chord_mask:
        allowed = chord_allowed(inputs["table"])[0]
        beat = np.minimum(now // STEPS_PER_BEAT, len(allowed) - 1)
        permitted = ops.convert_to_tensor(allowed[beat])
    remaining = ops.convert_to_tensor((inputs["limit"] - now).astype(np.int32))
    shaped = shape_logits(values, sampling, remaining, permitted)
    return np.asarray(ops.convert_to_numpy(shaped), np.float64)


# --------------------------------------------------------------------------- model pins


LOGIT_ROWS = (0, 1, 5, 17, 40, 97)
"""Rows of the teacher-forced logits pinned in full (the loss covers every row)."""


def teacher_forced_pin(model, inputs: dict[str, Any]) -> dict[str, Any]:
    """Mean cross-entropy (nats) of the pianist's tokens and END, and a few logit rows."""
    from pianoacc_utils.generation.sampling import TOKENIZER

    pianist = inputs["pianist"][: model.config.accompaniment_length - 1]
    logits = teacher_forced_logits(model, inputs, pianist)
    targets = np.asarray([*pianist, TOKENIZER.end_id])[: len(logits)]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(targets)), targets].mean()
    rows = [r for r in LOGIT_ROWS if r < len(logits)]
    return {"loss": float(loss), "rows": rows, "logits": logits[rows].round(5).tolist()}


def greedy_pin(model, inputs: dict[str, Any], sampling) -> dict[str, Any]:
    """Greedy tokens of the first window under ``sampling``'s chord mask, and each
    choice's lead over the runner-up among the tokens the loop allows (logits,
    teacher-forced on the greedy tokens)."""
    from pianoacc_utils.generation import CachedDecoder

    decoder = CachedDecoder(model, sampling)
    (tokens,) = decoder.decode(
        inputs["melody"], [[]], [inputs["limit"]], harmony_tables=inputs["table"],
        bar_tables=inputs["bars"],
    )
    logits = generation_logits(teacher_forced_logits(model, inputs, tokens), tokens, inputs,
                               sampling)[: len(tokens)]
    top = np.sort(logits, axis=1)
    return {"tokens": [int(t) for t in tokens], "margins": (top[:, -1] - top[:, -2]).round(5).tolist()}


def sampler_pin(model, inputs: dict[str, Any], sampling) -> dict[str, float]:
    """Statistics of :data:`DRAWS_PER_POSITION` draws of ``sampling``'s sampler at each
    position of the window, from the teacher-forced logits of the pianist's tokens as
    the loop reshapes them: the share of draws equal to the pianist's next token, their
    mean log-probability under the model, the share of note-on draws whose pitch class
    is in the beat's chord, the share of velocity draws and the spread of the velocity
    bins drawn."""
    from keras import ops

    from pianoacc_utils.defaults import STEPS_PER_BEAT
    from pianoacc_utils.generation.sampling import IS_VELOCITY, NOTE_ON_CLASS, TOKENIZER

    pianist = inputs["pianist"][: model.config.accompaniment_length - 1]
    raw = teacher_forced_logits(model, inputs, pianist)
    shaped = generation_logits(raw, pianist, inputs, sampling)
    targets = np.asarray([*pianist, TOKENIZER.end_id])[: len(raw)]
    repeated = np.repeat(shaped, DRAWS_PER_POSITION, axis=0).astype(np.float32)
    sampler = sampling.sampler()
    probabilities = sampler.compute_probabilities(ops.convert_to_tensor(repeated))
    drawn = np.asarray(ops.convert_to_numpy(sampler.get_next_token(probabilities))).reshape(-1)
    position = np.repeat(np.arange(len(raw)), DRAWS_PER_POSITION)
    shifted = raw - raw.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    beat = np.minimum(step_times(pianist)[position] // STEPS_PER_BEAT, inputs["table"].shape[1] - 1)
    chord = inputs["table"][0, beat, :12] > 0
    note_on = NOTE_ON_CLASS[drawn] < 12
    with_chord = note_on & chord.any(axis=1)
    in_chord = chord[np.arange(len(drawn)), np.minimum(NOTE_ON_CLASS[drawn], 11)]
    velocity = IS_VELOCITY[drawn]
    return {
        "teacher_token_share": float(np.mean(drawn == targets[position])),
        "mean_log_probability": float(np.mean(log_probs[position, drawn])),
        "note_on_in_chord": float(np.mean(in_chord[with_chord])),
        "velocity_share": float(np.mean(velocity)),
        "velocity_bin_std": float(np.std(drawn[velocity] - TOKENIZER.velocity_offset)),
    }


def sampled_pin(model, window, seg, sampling) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over :data:`SAMPLES` sampled accompaniments of the
    whole segment of :data:`SAMPLED_METRICS` (one batch: each row draws its own). One
    candidate per window: the sampler itself is pinned; reranking among candidates
    (``generation.rerank``) has its own tests."""
    from pianoacc_utils.evaluation import segment_metrics
    from pianoacc_utils.generation import accompany_segment

    accompaniments = accompany_segment(model, [seg] * SAMPLES, sampling, window, candidates=1)
    values = {name: [] for name in SAMPLED_METRICS}
    for notes in accompaniments:
        metrics = segment_metrics(seg, notes)
        for name in SAMPLED_METRICS:
            values[name].append(float(metrics[name]))
    return {
        name: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v))}
        for name, v in values.items()
    }


def model_pins(parts: Sequence[str] = ("teacher_forced", "greedy", "sampler", "sampled")
               ) -> dict[str, object]:
    """The pins of each shipped model (``parts`` of them)."""
    from pianoacc_utils.generation import SamplingConfig, load_checkpoint

    seg = pinned_segment()
    sampling = SamplingConfig(seed=0)
    greedy = SamplingConfig(temperature=0.0, top_p=None, chord_mask=True)
    pins: dict[str, object] = {}
    for name in MODELS:
        model, window = load_checkpoint(name)
        inputs = first_window(seg, window, model.config)
        if "teacher_forced" in parts:
            pins[f"{name}_teacher_forced"] = teacher_forced_pin(model, inputs)
        if "greedy" in parts:
            pins[f"{name}_greedy"] = greedy_pin(model, inputs, greedy)
        if "sampler" in parts:
            pins[f"{name}_sampler"] = sampler_pin(model, inputs, sampling)
        if "sampled" in parts:
            pins[f"{name}_sampled"] = sampled_pin(model, window, seg, sampling)
    return pins


def segment_pins() -> dict[str, object]:
    """Metrics of the pianist's and the block-chord baseline's notes on the segment."""
    from pianoacc_utils.evaluation import block_chord_baseline, segment_metrics

    seg = pinned_segment()
    return {
        "segment_ground_truth": _finite(segment_metrics(seg, seg.accompaniment)),
        "segment_block_chords": _finite(segment_metrics(seg, block_chord_baseline(seg))),
    }


def compute_pins() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        return {
            "prepared": prepared_pin(Path(tmp) / "prepared"),
            **segment_pins(),
            **model_pins(),
        }


# --------------------------------------------------------------------------- comparison


def _close(a: Any, b: Any, tolerance: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= tolerance


def greedy_difference(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """Where the greedy tokens part before the first pinned close call, if they do."""
    margins = np.asarray(expected["margins"])
    close = np.flatnonzero(margins <= MARGIN_TOLERANCE)
    trusted = int(close[0]) + 1 if len(close) else len(expected["tokens"])
    # the token at the close call itself is trusted: the choices before it are what decide it
    trusted = min(trusted, len(expected["tokens"]))
    want, got = expected["tokens"][:trusted], actual["tokens"][:trusted]
    if want != got:
        first = next((i for i, (w, g) in enumerate(zip(want, got)) if w != g), min(len(want), len(got)))
        return f"token {first} of {trusted} trusted ones differs"
    return None


def pin_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Every pin of ``expected`` that ``actual`` breaks, as one line each (empty: all
    hold). Only the pins present in ``actual`` are compared."""
    problems = []
    for key in sorted(expected):
        if key not in actual:
            continue
        want, got = expected[key], actual[key]
        if key == "prepared":
            if want != got:
                problems.append(f"{key}: prepared arrays changed")
        elif key.startswith("segment_"):
            for name, value in want.items():
                scale = METRIC_TOLERANCE * max(1.0, abs(value or 0.0))
                if not _close(value, got.get(name), scale):
                    problems.append(f"{key}.{name}: {got.get(name)} != {value}")
        elif key.endswith("_teacher_forced"):
            if not _close(want["loss"], got["loss"], LOSS_TOLERANCE):
                problems.append(f"{key}.loss: {got['loss']:.5f} != {want['loss']:.5f}")
            if want["rows"] != got["rows"]:
                problems.append(f"{key}.rows: {got['rows']} != {want['rows']}")
            else:
                gap = np.max(np.abs(np.asarray(want["logits"]) - np.asarray(got["logits"])))
                if gap > LOGIT_TOLERANCE:
                    problems.append(f"{key}.logits: off by up to {gap:.2e}")
        elif key.endswith("_greedy"):
            problem = greedy_difference(want, got)
            if problem:
                problems.append(f"{key}: {problem}")
        elif key.endswith("_sampler"):
            for name, tolerance in SAMPLER_TOLERANCES.items():
                if not _close(want[name], got[name], tolerance):
                    problems.append(f"{key}.{name}: {got[name]:.4f} != {want[name]:.4f}")
        elif key.endswith("_sampled"):
            for name, tolerance in SAMPLED_METRICS.items():
                if not _close(want[name]["mean"], got[name]["mean"], tolerance):
                    problems.append(
                        f"{key}.{name}: mean {got[name]['mean']:.3f} != {want[name]['mean']:.3f}"
                    )
        else:
            problems.append(f"{key}: no rule to compare it")
    return problems


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Compute the behaviour pins and write them.")
    parser.add_argument("out", nargs="?", type=Path, default=PINS_PATH,
                        help="where to write them (default: tests/fixtures/pins.json)")
    target = parser.parse_args().out
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("PIANOACC_CPU_PRECISION", "float32")
    pins = compute_pins()
    for key in (f"{name}_greedy" for name in MODELS):
        margins = np.asarray(pins[key]["margins"])
        close = np.flatnonzero(margins <= MARGIN_TOLERANCE)
        trusted = int(close[0]) + 1 if len(close) else len(margins)
        if trusted < MIN_TRUSTED_TOKENS:
            raise SystemExit(f"{key}: only {trusted} tokens before a close call; pin another window")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}")
