"""Loading a saved model without running its initializers (``backends.loading``): the
file's weights, the same variables as a model built by a pass over a batch, and not one
initializer called (each is a compiled program under JAX)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pianoacc_utils.backends.loading import host_zeros, weights_from_file
from pianoacc_utils.generation import load_checkpoint
from pianoacc_utils.models import ModelConfig, build_model

INITIALIZERS = (
    keras.initializers.VarianceScaling,  # glorot_uniform, the layers' kernels
    keras.initializers.RandomUniform,  # the token embeddings
    keras.initializers.Zeros,
    keras.initializers.Ones,
)


def refuse_initializers(monkeypatch) -> None:
    def refused(self, shape, dtype=None, **kwargs):
        raise AssertionError(f"{type(self).__name__} ran for a weight of shape {shape}")

    for initializer in INITIALIZERS:
        monkeypatch.setattr(initializer, "__call__", refused)


@pytest.mark.parametrize("kind", ["fnet", "transformer"])
def test_a_loaded_model_has_the_files_weights_and_runs_no_initializer(
    tmp_path, monkeypatch, kind
):
    config = ModelConfig(
        kind=kind, melody_length=32, accompaniment_length=64, hidden_dim=16, num_heads=2,
        intermediate_dim=32, encoder_layers=1, decoder_layers=2, dropout=0.0,
        time_embedding=True, harmony=True, meter=True,
    )
    keras.utils.set_random_seed(0)
    path = tmp_path / "model.keras"
    build_model(config).save(path)
    plain = keras.models.load_model(path, compile=False)  # built by a pass over a batch
    refuse_initializers(monkeypatch)
    with pytest.raises(AssertionError, match="ran for a weight"):
        keras.models.load_model(path, compile=False)  # the check bites without the context
    loaded, _ = load_checkpoint(path)  # within weights_from_file
    assert loaded.built
    assert [(w.path, tuple(w.shape)) for w in loaded.weights] == [
        (w.path, tuple(w.shape)) for w in plain.weights
    ]
    for mine, theirs in zip(loaded.weights, plain.weights):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    rng = np.random.default_rng(0)
    batch = {"melody": rng.integers(3, 300, (1, 12)).astype("int32"),
             "decoder_input": rng.integers(3, 300, (1, 20)).astype("int32")}
    np.testing.assert_allclose(np.asarray(loaded(batch)), np.asarray(plain(batch)), atol=1e-6)


def test_a_model_built_outside_the_context_gets_its_initial_weights():
    """``weights_from_file`` is for loading only: a new model (to be trained) keeps the
    initializers' random weights, the same for a seed as before."""
    config = ModelConfig(
        kind="fnet", melody_length=32, accompaniment_length=64, hidden_dim=16, num_heads=2,
        intermediate_dim=32, encoder_layers=1, decoder_layers=1, dropout=0.0,
    )
    keras.utils.set_random_seed(0)
    first = [np.asarray(w) for w in build_model(config).weights]
    keras.utils.set_random_seed(0)
    with weights_from_file():  # a model built directly, not from a saved configuration
        second = [np.asarray(w) for w in build_model(config).weights]
    assert any(np.abs(w).sum() > 0 for w in first)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_host_zeros_are_zeros_of_the_shape_and_dtype():
    zeros = np.asarray(host_zeros((3, 4), "float32"))
    assert zeros.shape == (3, 4) and zeros.dtype == np.float32 and not zeros.any()
