"""Models: shapes, saving (TensorFlow and JAX), cached decoding, padding, parameter counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras  # the backend is set by conftest.py before any test module is imported
import numpy as np
import pytest
import tiny

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import Note
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.harmony import HARMONY_DIM
from pianoacc_utils.models import (
    BAR_STEPS,
    KINDS,
    SHIFT_STEPS,
    AccompanimentModel,
    ModelConfig,
    build_model,
    count_parameters,
    decode_step,
    dummy_batch,
    init_cache,
)
from pianoacc_utils.models import cached as cached_module
from pianoacc_utils.models.cached import share_prefix

REPO = Path(__file__).resolve().parents[2]

TINY = {**tiny.TINY, "melody_length": 128, "encoder_layers": 2, "dropout": 0.1}
"""The shared tiny model with a longer melody, two encoder blocks and dropout."""

PADDING_TOLERANCE = 1e-5
"""Largest change of any next-token probability when a 40-token melody is padded
to 64 or 128 positions. The Transformer encoder masks padding; FNet mixes over a
fixed ``melody_length`` (docs/model.md, "Padding and FNet"): float round-off only
for both kinds."""


def tiny_config(kind: str, **changes) -> ModelConfig:
    return ModelConfig(kind=kind, **{**TINY, **changes})


def random_batch(seed: int = 0, batch: int = 3, melody: int = 40, decoder: int = 24):
    """Token ids with ragged padding: row 1 has a shorter melody and accompaniment."""
    rng = np.random.default_rng(seed)
    melody_ids = rng.integers(3, 323, (batch, melody)).astype("int32")
    decoder_ids = rng.integers(3, 323, (batch, decoder)).astype("int32")
    decoder_ids[:, 0] = 1
    melody_ids[1, melody - 9 :] = 0
    decoder_ids[1, decoder - 5 :] = 0
    return melody_ids, decoder_ids


@pytest.fixture(scope="module", params=KINDS)
def model(request) -> AccompanimentModel:
    keras.utils.set_random_seed(1)
    return build_model(tiny_config(request.param))


def test_config_json_round_trip_and_errors():
    config = tiny_config("transformer")
    assert ModelConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["kind"] == "transformer"
    with pytest.raises(PianoaccError, match="kind"):
        ModelConfig(kind="lstm")
    with pytest.raises(PianoaccError, match="divisible"):
        ModelConfig(hidden_dim=30, num_heads=4)
    with pytest.raises(PianoaccError, match="unknown"):
        ModelConfig.from_dict({"kind": "fnet", "layers": 3})


def test_output_shape_dtype_and_parameter_counts(model):
    melody_ids, decoder_ids = random_batch()
    logits = model({"melody": melody_ids, "decoder_input": decoder_ids})
    assert tuple(logits.shape) == (3, 24, model.config.vocabulary_size)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    counts = count_parameters(model)
    parts = counts["embeddings"] + counts["encoder"] + counts["decoder"] + counts["output"]
    assert counts["total"] == parts == model.count_params()
    hidden, vocab = model.config.hidden_dim, model.config.vocabulary_size
    # step-in-beat, beat and bar-position rows
    time_tables = STEPS_PER_BEAT + model.config.max_beats + BAR_STEPS
    chord_projection = HARMONY_DIM  # no bias: a row of zeros (no chord) adds nothing
    assert counts["embeddings"] == hidden * (2 * vocab + 128 + 64 + time_tables + chord_projection)
    # FNet blocks have no attention weights: fewer encoder parameters than Transformer ones.
    other_kind = "fnet" if model.config.kind == "transformer" else "transformer"
    other = build_model(tiny_config(other_kind))
    fnet, transformer = sorted([model, other], key=lambda m: m.config.kind)
    assert count_parameters(fnet)["encoder"] < count_parameters(transformer)["encoder"]
    assert count_parameters(fnet)["decoder"] == count_parameters(transformer)["decoder"]


def test_a_traced_build_creates_the_weights_a_real_pass_creates(model):
    """Under JAX ``build`` traces the dummy batch instead of running it: both must create
    the same weights, in the same order and shapes, or checkpoints saved under one backend
    would not load under the other."""
    traced, ran = AccompanimentModel(model.config), AccompanimentModel(model.config)
    traced.compute_output_spec(dummy_batch(symbolic=True), training=False)
    ran.call(dummy_batch(), training=False)  # what build does under TensorFlow
    assert traced.weights and [(w.path, tuple(w.shape)) for w in traced.weights] == [
        (w.path, tuple(w.shape)) for w in ran.weights
    ]


def test_summary_lists_the_blocks(model, capsys):
    model.summary()
    text = capsys.readouterr().out
    assert "melody_embedding" in text and "transformer_decoder_1" in text


def test_causal_decoder_ignores_future_tokens(model):
    melody_ids, decoder_ids = random_batch(seed=2)
    changed = decoder_ids.copy()
    changed[:, 10:] = 7
    a = keras.ops.convert_to_numpy(model({"melody": melody_ids, "decoder_input": decoder_ids}))
    b = keras.ops.convert_to_numpy(model({"melody": melody_ids, "decoder_input": changed}))
    np.testing.assert_allclose(a[:, :10], b[:, :10], atol=1e-5)
    assert np.abs(a[:, 10:] - b[:, 10:]).max() > 1e-3


def test_cached_decoding_equals_full_decoding(model):
    melody_ids, decoder_ids = random_batch(seed=3)
    decoder_ids[1, :] = np.where(decoder_ids[1] == 0, 5, decoder_ids[1])  # unpadded rows
    encoder_output = model.encode(melody_ids)
    full = keras.ops.convert_to_numpy(model.decode(decoder_ids, encoder_output, melody_ids))

    # A 6-token prefix in one call, then one token per step.
    cache = init_cache(model, encoder_output, melody_ids, decoder_ids.shape[1])
    logits, cache = decode_step(model, decoder_ids[:, :6], cache, 0)
    steps = [keras.ops.convert_to_numpy(logits)]
    for index in range(6, decoder_ids.shape[1]):
        elapsed = SHIFT_STEPS[decoder_ids[:, :index]].sum(axis=1).astype("int32")
        logits, cache = decode_step(
            model, decoder_ids[:, index : index + 1], cache, keras.ops.convert_to_tensor(index),
            start_time=elapsed,
        )
        steps.append(keras.ops.convert_to_numpy(logits))
    cached = np.concatenate(steps, axis=1)
    assert cached.shape == full.shape
    np.testing.assert_allclose(cached, full, atol=1e-4)
    c = model.config
    assert len(cache.keys) == len(cache.cross_values) == c.decoder_layers
    # Batch and heads share the caches' leading axis (B*H, positions, head_dim).
    assert tuple(cache.keys[0].shape) == (3 * c.num_heads, 24, c.head_dim)
    assert tuple(cache.cross_keys[-1].shape) == (3 * c.num_heads, 40, c.head_dim)
    with pytest.raises(PianoaccError, match="accompaniment_length"):
        init_cache(model, encoder_output, melody_ids, c.accompaniment_length + 1)


def test_rows_sharing_a_prompt_see_what_rows_with_copies_of_it_see(model, monkeypatch):
    """Three rows per window after a 6-token prompt, two windows: keeping the prompt's and
    the melody's keys once per window (``share_prefix``) gives each row the logits of
    the full decoder over the prompt and the row's own tokens, also past the first
    ``RECENT`` of them (made 4 here, so that the second buffer is read); a step of more
    than one token is refused."""
    monkeypatch.setattr(cached_module, "RECENT", 4)
    melody_ids, decoder_ids = random_batch(seed=5, batch=2)
    decoder_ids[1, :] = np.where(decoder_ids[1] == 0, 5, decoder_ids[1])  # unpadded rows
    rows = np.repeat(np.arange(2), 3)
    own = np.random.default_rng(6).integers(3, 323, (6, decoder_ids.shape[1])).astype("int32")
    own[:, :6] = decoder_ids[rows, :6]  # each row: its window's prompt, then tokens of its own
    encoder_output = model.encode(melody_ids)
    full = keras.ops.convert_to_numpy(
        model.decode(own, model.encode(melody_ids[rows]), melody_ids[rows]))
    cache = init_cache(model, encoder_output, melody_ids, own.shape[1])
    _, cache = decode_step(model, decoder_ids[:, :6], cache, 0)
    cache = share_prefix(cache, 6, keras.ops.convert_to_tensor(5))
    steps = []
    for index in range(5, own.shape[1]):
        elapsed = SHIFT_STEPS[own[:, :index]].sum(axis=1).astype("int32")
        logits, cache = decode_step(model, own[:, index : index + 1], cache,
                                    keras.ops.convert_to_tensor(index), start_time=elapsed)
        steps.append(keras.ops.convert_to_numpy(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full[:, 5:], atol=1e-4)
    assert own.shape[1] - 5 > 2 * cached_module.RECENT  # the later buffer was read
    with pytest.raises(PianoaccError, match="one token at a time"):
        decode_step(model, own[:, 5:7], cache, keras.ops.convert_to_tensor(5))


def _probabilities(model, melody_ids, decoder_ids):
    logits = model({"melody": melody_ids, "decoder_input": decoder_ids})
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


def _padding_change(model, melody_ids, decoder_ids, length):
    padded = np.zeros((len(melody_ids), length), dtype="int32")
    padded[:, : melody_ids.shape[1]] = melody_ids
    reference = _probabilities(model, melody_ids, decoder_ids)
    return np.abs(_probabilities(model, padded, decoder_ids) - reference).max()


def test_padding_the_melody_further_does_not_change_predictions(model):
    melody_ids, decoder_ids = random_batch(seed=4)
    for length in (64, 128):
        change = _padding_change(model, melody_ids, decoder_ids, length)
        assert change < PADDING_TOLERANCE, f"padding to {length}: probabilities moved by {change}"
    # The predictions do depend on the melody: another one moves them far more.
    other, _ = random_batch(seed=5)
    other[1, 31:] = 0
    reference = _probabilities(model, melody_ids, decoder_ids)
    assert np.abs(_probabilities(model, other, decoder_ids) - reference).max() > 1e-3


def test_fnet_over_the_padded_length_only_depends_on_padding():
    keras.utils.set_random_seed(1)
    model = build_model(tiny_config("fnet", fnet_full_length=False))
    melody_ids, decoder_ids = random_batch(seed=4)
    assert _padding_change(model, melody_ids, decoder_ids, 128) > 1e-3
    with pytest.raises(PianoaccError, match="melody_length 128"):
        model.encode(np.ones((1, 129), dtype="int32"))


def test_train_step_save_and_load_same_predictions(model, tmp_path):
    from pianoacc_utils.training import TrainConfig, compile_model

    compile_model(model, TrainConfig(learning_rate=1e-3, warmup_steps=1))
    model.run_eagerly = True  # one step: tracing a tf.function would cost more than it runs
    melody_ids, decoder_ids = random_batch(seed=6)
    target = np.concatenate([decoder_ids[:, 1:], np.full((3, 1), 2, "int32")], axis=1)
    target[decoder_ids == 0] = 0
    model.train_on_batch({"melody": melody_ids, "decoder_input": decoder_ids}, target)
    inputs = {"melody": melody_ids, "decoder_input": decoder_ids}
    before = keras.ops.convert_to_numpy(model(inputs))
    path = tmp_path / f"{model.config.kind}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, AccompanimentModel)
    assert loaded.config == model.config
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(inputs)), before)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 1


def test_mixed_precision_keeps_float32_logits():
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = build_model(tiny_config("fnet", encoder_layers=1, decoder_layers=1))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    melody_ids, decoder_ids = random_batch(seed=7)
    encoder_output = half.encode(melody_ids)
    assert keras.backend.standardize_dtype(encoder_output.dtype) == "float16"
    logits = half({"melody": melody_ids, "decoder_input": decoder_ids})
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(logits)).all()


JAX_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from pianoacc_utils.models import (
        KINDS, SHIFT_STEPS, ModelConfig, build_model, decode_step, init_cache,
    )
    from pianoacc_utils.training import TrainConfig, compile_model

    rng = np.random.default_rng(0)
    melody = rng.integers(3, 323, (2, 20)).astype("int32")
    melody[1, 15:] = 0
    decoder = rng.integers(3, 323, (2, 12)).astype("int32")
    decoder[:, 0] = 1
    target = np.roll(decoder, -1, axis=1)
    inputs = {"melody": melody, "decoder_input": decoder}
    for kind in KINDS:
        config = ModelConfig(kind=kind, melody_length=32, accompaniment_length=16, hidden_dim=32,
                             num_heads=2, intermediate_dim=64, encoder_layers=1, decoder_layers=1)
        model = compile_model(build_model(config), TrainConfig(warmup_steps=1))
        model.train_on_batch(inputs, target)
        before = keras.ops.convert_to_numpy(model(inputs))
        assert before.shape == (2, 12, config.vocabulary_size), before.shape
        path = f"{sys.argv[1]}/{kind}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        after = keras.ops.convert_to_numpy(loaded(inputs))
        assert np.array_equal(before, after), np.abs(before - after).max()
        assert int(loaded.optimizer.iterations) == 1
        encoder_output = model.encode(melody)
        cache = init_cache(model, encoder_output, melody, 12)
        steps = []
        for index in range(12):
            logits, cache = decode_step(
                model, decoder[:, index : index + 1], cache, index,
                start_time=SHIFT_STEPS[decoder[:, :index]].sum(axis=1).astype("int32"))
            steps.append(keras.ops.convert_to_numpy(logits))
        assert np.abs(np.concatenate(steps, axis=1) - before).max() < 1e-4
        print(kind, "ok")
    """
)


def test_jax_backend_builds_trains_saves_loads_and_caches(tmp_path):
    env = {**os.environ, **tiny.JAX_TINY_ENV}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fnet ok" in result.stdout and "transformer ok" in result.stdout


# --------------------------------------------------------------------------- token mixing


def test_fnet_mixing_is_the_real_part_of_a_2d_fft():
    from pianoacc_utils.course.fnet import fnet_encoder_mixing, fourier_mixing

    x = np.random.default_rng(3).normal(size=(2, 6, 4)).astype("float32")
    expected = np.real(np.fft.fft2(x))  # over the last two axes: tokens and features
    from_layer = fnet_encoder_mixing(x)
    assert from_layer.shape == x.shape
    np.testing.assert_allclose(from_layer, expected, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fourier_mixing(x)), expected, atol=1e-5)
    # One token changed: every output row changes (the mixing spans the whole sequence).
    moved = x.copy()
    moved[0, 2] += 1.0
    changed = np.abs(fnet_encoder_mixing(moved) - from_layer)[0] > 1e-3
    assert changed.any(axis=1).all()
    with pytest.raises(PianoaccError, match="expected \\(batch, tokens, features\\)"):
        fnet_encoder_mixing(x[0])


def test_token_mixing_times_has_a_row_per_length():
    from pianoacc_utils.course.fnet import token_mixing_times

    rows = token_mixing_times([16, 32], hidden_dim=8, num_heads=2, repeats=1)
    assert [row["length"] for row in rows] == [16, 32]
    for row in rows:
        assert set(row) == {"length", "fourier_ms", "attention_ms"}
        assert row["fourier_ms"] > 0 and row["attention_ms"] > 0
    with pytest.raises(PianoaccError, match="not divisible"):
        token_mixing_times([16], hidden_dim=10, num_heads=4)


def test_token_times_and_time_embedding_rows():
    from pianoacc_utils.models import TimeEmbedding, token_times
    from pianoacc_utils.tokenizer import EventTokenizer

    tok = EventTokenizer()
    shift = lambda steps: tok.shift_tokens(steps)[0]  # noqa: E731
    note_on = tok.encode([Note(0, 1, 60, 80)])[1]  # [velocity, note-on, shift, note-off]
    ids = np.array([[tok.start_id, shift(3), note_on, shift(8), shift(32), 0]], "int32")
    times = keras.ops.convert_to_numpy(token_times(ids))
    assert times.tolist() == [[0, 3, 3, 11, 43, 43]]
    later = keras.ops.convert_to_numpy(token_times(ids[:, 2:], np.array([3], "int32")))
    assert later.tolist() == [[3, 11, 43, 43]]  # a step that starts mid-sequence

    layer = TimeEmbedding(max_beats=4, output_dim=2)
    layer.build()
    layer.step_embedding.set_weights([np.arange(16, dtype="float32").reshape(8, 2)])
    layer.beat_embedding.set_weights([100 * np.arange(8, dtype="float32").reshape(4, 2)])
    out = keras.ops.convert_to_numpy(layer(ids))[0, :, 0]
    # time 43 = beat 5 (clipped to the last row, 3), step 3 in the beat
    expected = [0 + 0, 6 + 0, 6 + 0, 6 + 200, 6 + 600, 6 + 600]
    assert out.tolist() == expected


def test_time_signal_is_shared_and_checkpoints_without_it_still_load(tmp_path):
    model = build_model(tiny_config("fnet"))
    assert model.time_embedding is not None
    names = [w.path for w in model.time_embedding.weights]
    assert any("step_in_beat" in n for n in names) and any("beat" in n for n in names)
    # The same tokens one beat later: other logits with the time signal, the same without.
    melody_ids, decoder_ids = random_batch(seed=4)

    def beat_change(m):
        encoder_output = m.encode(melody_ids)
        logits = []
        for start in (0, STEPS_PER_BEAT):
            cache = init_cache(m, encoder_output, melody_ids, 8)
            start_time = np.full(3, start, "int32")
            logits.append(keras.ops.convert_to_numpy(
                decode_step(m, decoder_ids[:, :8], cache, 0, start_time)[0]
            ))
        return np.abs(logits[0] - logits[1]).max()

    assert beat_change(model) > 1e-3
    config = model.get_config()
    old = dict(config, config={k: v for k, v in config["config"].items() if k != "time_embedding"})
    rebuilt = AccompanimentModel.from_config(old)
    assert rebuilt.config.time_embedding is False  # saved before the time signal existed
    plain = build_model(tiny_config("fnet", time_embedding=False))
    assert plain.time_embedding is None
    assert beat_change(plain) == 0
    assert count_parameters(model)["total"] - count_parameters(plain)["total"] == (
        (STEPS_PER_BEAT + model.config.max_beats + BAR_STEPS) * model.config.hidden_dim
    )
    plain.save(tmp_path / "plain.keras")
    loaded = keras.models.load_model(tmp_path / "plain.keras")
    assert loaded.config.time_embedding is False
