"""FFT teaching demos for notebook 03: what FNet's token mixing computes, and what it costs.

:func:`fourier_mixing` is the mixing written out (the real part of a 2-D FFT);
:func:`fnet_encoder_mixing` reads the same mixing out of keras-hub's own ``FNetEncoder``,
so that the notebook can show the two are equal; :func:`token_mixing_times` times the
mixing against self-attention as sequences grow. The model itself uses keras-hub's
layer (:mod:`pianoacc_utils.models.seq2seq`), not these functions.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import keras_hub
import numpy as np
from keras import ops

from pianoacc_utils.common import PianoaccError


def fourier_mixing(x: Any) -> Any:
    """FNet's token mixing: the real part of the 2-D discrete Fourier transform of ``x``
    ``(..., tokens, features)`` over its last two axes, in float32.

    The computation inside ``keras_hub.layers.FNetEncoder``:
    ``y[k, d] = sum over n, m of x[n, m] * cos(2 pi (k n / tokens + d m / features))``,
    fixed weights, nothing to learn; every output mixes every token and feature.
    """
    real = ops.cast(x, "float32")
    mixed, _ = ops.fft2((real, ops.zeros_like(real)))
    return mixed


def fnet_encoder_mixing(x: np.ndarray) -> np.ndarray:
    """The token mixing that a ``keras_hub.layers.FNetEncoder`` block computes on ``x``
    ``(batch, tokens, features)``, read from the library's layer itself (float32).

    The block adds its mixing to its input and layer-normalises the sum: the input of
    that first layer norm minus ``x`` is the mixing. Shows that the layer is the real
    part of a 2-D FFT (compare with :func:`fourier_mixing` or ``numpy.fft.fft2``).
    """
    x = np.asarray(x, dtype="float32")
    if x.ndim != 3:
        raise PianoaccError(
            f"FNet mixing input: expected (batch, tokens, features), got shape {x.shape}"
        )
    block = keras_hub.layers.FNetEncoder(intermediate_dim=x.shape[-1])
    block.build(x.shape)
    norm = getattr(block, "_mixing_layer_norm", None)
    if norm is None:
        raise PianoaccError(
            f"keras_hub {keras_hub.__version__} FNetEncoder has no _mixing_layer_norm: "
            "cannot read its mixing"
        )
    norm_inputs = []
    norm_call = norm.call

    def recording_call(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        norm_inputs.append(ops.convert_to_numpy(inputs))
        return norm_call(inputs, *args, **kwargs)

    norm.call = recording_call
    try:
        block(x, training=False)
    finally:
        del norm.call
    return norm_inputs[0] - x


def token_mixing_times(
    lengths: list[int] | tuple[int, ...],
    hidden_dim: int,
    num_heads: int,
    batch_size: int = 1,
    repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Forward time of FNet's Fourier mixing and of self-attention as sequences grow.

    For each length (tokens), random float32 inputs ``(batch_size, length, hidden_dim)``
    go through :func:`fourier_mixing` and through a ``keras.layers.MultiHeadAttention``
    self-attention layer (``num_heads`` heads of ``hidden_dim // num_heads``, with its
    query/key/value/output projections: the sub-layer the Fourier transform replaces).
    Each runs once to warm up, then ``repeats`` times. Rows: ``length``, ``fourier_ms``
    and ``attention_ms`` (median milliseconds per call; eager calls, so the shortest
    lengths include a fixed per-call overhead).
    """
    if hidden_dim % num_heads:
        raise PianoaccError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
    rng = np.random.default_rng(seed)
    attention = keras.layers.MultiHeadAttention(num_heads, hidden_dim // num_heads)

    def median_ms(function: Any) -> float:
        ops.convert_to_numpy(function())  # warm-up (and builds the attention weights)
        times = []
        for _ in range(max(1, repeats)):
            began = time.perf_counter()
            ops.convert_to_numpy(function())
            times.append(time.perf_counter() - began)
        return 1000.0 * float(np.median(times))

    rows = []
    for length in lengths:
        x = ops.convert_to_tensor(
            rng.normal(size=(batch_size, int(length), hidden_dim)).astype("float32")
        )
        rows.append(
            {
                "length": int(length),
                "fourier_ms": median_ms(lambda x=x: fourier_mixing(x)),
                "attention_ms": median_ms(lambda x=x: attention(x, x)),
            }
        )
    return rows
