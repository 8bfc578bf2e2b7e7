"""The GPU training path, exercised on a CPU: the `full` profile's model, mixed precision,
and data parallelism over two simulated devices under TensorFlow and JAX.

Sizes are cut only where the CPU needs it (batch rows, sequence lengths); the `full`
profile's model hyper-parameters are kept. The two-device runs happen in subprocesses:
the devices must be configured before the backend starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tiny

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.harmony.chords import HARMONY_DIM
from pianoacc_utils.models import build_model
from pianoacc_utils.prepare import PrepareConfig, prepare
from pianoacc_utils.training import (
    CPU_PRECISION_VARIABLE,
    PROFILES,
    compile_model,
    cpu_precision,
    has_bfloat16_units,
    precision_policy,
)

REPO = Path(__file__).resolve().parents[2]
FULL = PROFILES["full"]


def tiny_batch(rows: int = 2, lengths: tuple[int, ...] = (16, 11)) -> tuple[dict, np.ndarray]:
    """A teacher-forced batch of ``rows`` rows of real token ids, padded to 16 tokens:
    row ``i`` has ``lengths[i]`` real tokens, the chord tables hold a C major triad."""
    rng = np.random.default_rng(0)
    melody = rng.integers(3, 200, size=(rows, 16)).astype("int32")
    decoder = rng.integers(3, 200, size=(rows, 16)).astype("int32")
    for row, length in enumerate(lengths):
        decoder[row, length:] = 0
    target = np.concatenate([decoder[:, 1:], np.zeros((rows, 1), "int32")], axis=1)
    harmony = np.zeros((rows, 4, HARMONY_DIM), "float32")
    harmony[:, :, [0, 4, 7]] = 1.0
    bars = np.zeros((rows, 1), "int32")
    return {"melody": melody, "decoder_input": decoder, "harmony": harmony, "bars": bars}, target


def test_full_profile_model_trains_two_steps():
    """The `full` profile's model (512 wide, 6 + 6 blocks, 2,048 decoder positions) and
    optimiser settings, on a batch of two 16-token rows."""
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(FULL.model_config("fnet")), FULL.train)
    model.run_eagerly = True  # the same ops, without tracing a 12-block graph on a CPU
    assert model.config.hidden_dim == 512 and model.config.decoder_layers == 6
    inputs, target = tiny_batch()
    before = [w.copy() for w in model.get_weights()[:4]]
    losses = [model.train_on_batch(inputs, target, return_dict=True)["loss"] for _ in range(2)]
    assert all(math.isfinite(loss) and 3.0 < loss < 8.0 for loss in losses), losses
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()[:4]))


def test_cpu_precision_without_a_measurement_is_float32_or_the_variable(monkeypatch):
    """Where nothing was measured (``training.precision`` times a run's own steps) CPU
    cores compute in float32; the environment variable fixes it either way; bfloat16
    units are the processor flags AVX-512 BF16 or AMX BF16."""
    monkeypatch.delenv(CPU_PRECISION_VARIABLE, raising=False)
    assert cpu_precision() == "float32"
    assert has_bfloat16_units(frozenset({"avx2", "fma", "amx_tile", "amx_bf16"}))
    assert has_bfloat16_units(frozenset({"avx512f", "avx512_bf16"}))
    assert not has_bfloat16_units(frozenset({"avx2", "fma", "avx512f"}))
    with precision_policy(False, cpu="mixed_bfloat16") as policy:  # a measured choice
        assert policy == keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    monkeypatch.setenv(CPU_PRECISION_VARIABLE, "mixed_bfloat16")
    assert cpu_precision() == "mixed_bfloat16"
    with precision_policy(False) as policy:  # a CPU-only run takes the variable's
        assert policy == keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    monkeypatch.setenv(CPU_PRECISION_VARIABLE, "bf16")
    with pytest.raises(PianoaccError, match="PIANOACC_CPU_PRECISION='bf16': expected one of"):
        cpu_precision()


def test_mixed_bfloat16_trains_a_step_with_float32_logits():
    """Mixed precision as on a GPU (here ``mixed_bfloat16``, which a CPU runs): bfloat16
    compute, float32 weights, float32 logits and a finite loss."""
    config = dataclasses.replace(FULL.model_config("transformer"), encoder_layers=1, decoder_layers=1)
    keras.utils.set_random_seed(0)
    with precision_policy(True, "mixed_bfloat16") as policy:
        assert policy == "mixed_bfloat16"
        model = compile_model(build_model(config), FULL.train)
        model.run_eagerly = True
        inputs, target = tiny_batch()
        logits = model(inputs, training=False)
        logs = model.train_on_batch(inputs, target, return_dict=True)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert model.decoder_blocks[0].compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert math.isfinite(logs["loss"]) and 3.0 < logs["loss"] < 8.0


# --------------------------------------------------------------------------- two devices

TWO_DEVICES = textwrap.dedent(
    """
    import dataclasses, json, os, sys
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
    import keras
    sys.path[:0] = ["tests", "tests/training"]
    from test_gpu_path import tiny_batch
    from pianoacc_utils.models import build_model
    from pianoacc_utils.training import (
        PROFILES, MaskedSparseCrossentropy, Perplexity, pick_strategy, train,
    )

    quick = PROFILES["quick"]
    config = quick.model_config("transformer")
    inputs, target = tiny_batch(4, (16, 3, 9, 12))  # the halves hold 19 and 21 tokens
    keras.utils.set_random_seed(0)
    weights = build_model(config).get_weights()

    def losses(strategy):
        # Plain gradient descent: the step is the gradient itself, which AdamW's first
        # step (about the gradient's sign) would hide.
        with strategy.scope():
            model = build_model(config)
            model.compile(optimizer=keras.optimizers.SGD(0.5),
                          loss=MaskedSparseCrossentropy(), metrics=[Perplexity()])
            model.set_weights(weights)
            first = model.train_on_batch(inputs, target, return_dict=True)
            after = model.test_on_batch(inputs, target, return_dict=True)
        return {"loss": first["loss"], "perplexity": first["perplexity"],
                "loss_after_step": after["loss"]}

    strategy = pick_strategy()
    report = {"strategy": strategy.describe(), "two": losses(strategy)}
    report["one"] = losses(dataclasses.replace(strategy, name="default", strategy=None))

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("crash after the first step")

    if os.environ["KERAS_BACKEND"] == "jax":  # the backend of the GPU machines
        run = dataclasses.replace(quick, train=dataclasses.replace(
            quick.train, max_train_segments=32, max_validation_segments=16,
            length_multiple=quick.model.accompaniment_length,  # one shape: one compilation
        ))
        out = sys.argv[1]
        try:
            train(run, "fnet", out, epochs=1, progress=False, data=sys.argv[2],
                  checkpoint_steps=1, callbacks=[Crash()])
        except RuntimeError:
            pass
        report["history"] = train(run, "fnet", out, resume=True, epochs=1, progress=False,
                                  data=sys.argv[2])
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def tiny_data(test_environment) -> Path:
    """4-bar segments of the first 30 songs (one of them a validation song)."""
    config = PrepareConfig(bars_per_segment=4, hop_bars=4, songs=30, max_tokens=256)
    return prepare(config, workers=2, progress=False)


@pytest.mark.parametrize(
    ("backend", "name"), [("tensorflow", "mirrored"), ("jax", "data_parallel")]
)
def test_two_devices_give_the_loss_of_one(backend, name, tiny_data, tmp_path):
    """Data parallelism over two CPU devices: the batch split in two, the same loss,
    metrics and update as one device; and, under JAX (the backend of the GPU machines,
    which have no TensorFlow), `train` runs, checkpoints inside the epoch and resumes
    under the strategy."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    if backend == "jax":
        env.update(tiny.JAX_TINY_ENV)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    result = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, str(tmp_path / "run"), str(tiny_data)],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["strategy"]["name"] == name and len(report["strategy"]["devices"]) == 2
    one, two = report["one"], report["two"]
    for key in ("loss", "perplexity", "loss_after_step"):
        assert two[key] == pytest.approx(one[key], rel=1e-4), (key, one, two)
    assert one["loss_after_step"] < one["loss"]  # the step was taken
    if backend == "tensorflow":
        return  # training runs under the strategy on JAX, the GPU machines' backend
    assert report["history"]["epoch"] == [0] and math.isfinite(report["history"]["val_loss"][0])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["strategy"]["name"] == name
    state = json.loads((tmp_path / "run" / "training_state.json").read_text())
    assert state["epochs_done"] == 1 and state["optimizer_iterations"] == 2
