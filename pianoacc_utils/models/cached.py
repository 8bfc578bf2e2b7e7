"""Cached decoding: the decoder run one token (or one prompt prefix) at a time.

Generating token ``t`` with :meth:`AccompanimentModel.decode` re-runs the decoder over
all ``t`` tokens before it; with key/value caches each step projects only its new
tokens and attends over the keys and values kept from the steps before, and the
cross-attention keys/values of the melody are computed once per window. This is what
makes generation fast (timings: ``benchmarks/results/generation_speed.json``).

:func:`decode_step` computes what the keras-hub ``TransformerDecoder`` blocks of the
model compute (``tests/models/test_models.py`` checks that the logits agree), from the blocks'
own sub-layers, so the weights are the model's. It keeps one key and one value tensor
per layer, written in place (``slice_update``), where keras-hub's own cached call
slices and re-stacks one combined cache tensor every step. Reading sub-layers that are
not public API ties this module to keras-hub's internals: :func:`init_cache` checks
they exist and names any that a keras-hub version renamed.

Shapes: ``B`` batch, ``T`` new tokens, ``H`` heads, ``S`` cached positions, ``d`` head_dim.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import keras
import keras_hub
from keras import ops

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.models.seq2seq import AccompanimentModel


def _residual(block: Any, norm: Any, sublayer: Any, x: Any) -> Any:
    """One residual sub-layer of a keras-hub decoder block, with its layer norm before
    (``normalize_first``) or after the residual sum, as the block does it."""
    if block.normalize_first:
        return sublayer(norm(x)) + x
    return norm(sublayer(x) + x)


def _merged_heads(x: Any) -> Any:
    """(B, T, H, d) -> (B*H, T, d): batch and heads in one leading axis, the layout
    of the caches (see :class:`DecoderCache`)."""
    shape = ops.shape(x)
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, shape[1], shape[3]))


_DECODER_INTERNALS = (
    "_self_attention_layer", "_self_attention_layer_norm", "_cross_attention_layer",
    "_cross_attention_layer_norm", "_feedforward_intermediate_dense",
    "_feedforward_output_dense", "_feedforward_layer_norm", "normalize_first",
)


def _check_decoder_internals(block: keras.layers.Layer) -> None:
    """Cached decoding reads a keras-hub decoder block's sub-layers: fail clearly if a
    keras-hub version renamed them."""
    missing = [name for name in _DECODER_INTERNALS if not hasattr(block, name)]
    attention = getattr(block, "_self_attention_layer", None)
    missing += [
        f"_self_attention_layer.{name}"
        for name in ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
        if attention is not None and not hasattr(attention, name)
    ]
    if missing:
        raise PianoaccError(
            f"keras_hub {keras_hub.__version__} TransformerDecoder lacks {', '.join(missing)}: "
            "cached decoding needs these sub-layers"
        )


class DecoderCache(NamedTuple):
    """State of cached decoding, one entry per decoder layer.

    ``keys``/``values``: self-attention keys and values ``(B*heads, max_length,
    head_dim)`` (batch and heads in one leading axis: two 3-D products per attention
    instead of 4-D ones); ``cross_keys``/``cross_values``: the projected encoder output
    ``(B*heads, Lm, head_dim)``; ``melody_mask`` (B, Lm): real melody positions;
    ``harmony``: the harmony table (B, beats, 24) of the window, or ``None``;
    ``bars``: its bar lines (B, K), or ``None``.
    A named tuple, so that it can be the state of a compiled loop (JAX pytree,
    ``tf.nest`` structure).
    """

    keys: tuple[Any, ...]
    values: tuple[Any, ...]
    cross_keys: tuple[Any, ...]
    cross_values: tuple[Any, ...]
    melody_mask: Any
    harmony: Any = None
    bars: Any = None


def init_cache(
    model: AccompanimentModel,
    encoder_output: Any,
    melody_ids: Any,
    max_length: int,
    harmony: Any = None,
    bars: Any = None,
) -> DecoderCache:
    """A :class:`DecoderCache` for generating up to ``max_length`` decoder tokens.

    The self-attention keys/values start as zeros (filled step by step by
    :func:`decode_step`); the cross-attention keys/values of ``encoder_output``
    are computed here, once. ``max_length`` may not exceed
    ``config.accompaniment_length``. ``harmony`` and ``bars``: the window's
    harmony table and bar lines (as in :meth:`encode`), kept in the cache for the steps.
    """
    c = model.config
    if isinstance(max_length, int) and max_length > c.accompaniment_length:
        raise PianoaccError(
            f"cache length {max_length} exceeds the model's accompaniment_length "
            f"{c.accompaniment_length}"
        )
    _check_decoder_internals(model.decoder_blocks[0])
    batch = ops.shape(encoder_output)[0]
    shape = (batch * c.num_heads, max_length, c.head_dim)
    dtype = encoder_output.dtype
    cross = [block._cross_attention_layer for block in model.decoder_blocks]
    return DecoderCache(
        keys=tuple(ops.zeros(shape, dtype) for _ in model.decoder_blocks),
        values=tuple(ops.zeros(shape, dtype) for _ in model.decoder_blocks),
        cross_keys=tuple(_merged_heads(layer._key_dense(encoder_output)) for layer in cross),
        cross_values=tuple(
            _merged_heads(layer._value_dense(encoder_output)) for layer in cross
        ),
        melody_mask=model.melody_padding_mask(melody_ids),
        harmony=harmony,
        bars=bars,
    )


def decode_step(
    model: AccompanimentModel,
    token_ids: Any,
    cache: DecoderCache,
    index: Any,
    start_time: Any = None,
) -> tuple[Any, DecoderCache]:
    """Decode ``token_ids`` ``(B, T)`` placed at positions ``index..index+T-1``.

    ``T`` is 1 for one generation step, or the length of a prompt prefix
    (unpadded: every row must have ``T`` real tokens). ``index`` may be a
    Python int or an integer tensor (for compiled loops). ``start_time``
    (B,) int: the time in grid steps reached before ``token_ids[:, 0]``
    (the sum of the time shifts at positions ``0..index-1``); ``None``
    means 0, right only when ``index`` is 0. Returns ``(logits (B, T, V),
    cache)`` with the new keys/values written into the cache.
    """
    x = model.embed(
        model.accompaniment_embedding, token_ids, index, start_time, cache.harmony, cache.bars
    )  # (B, T, D)
    length = ops.shape(cache.keys[0])[1]  # S: the cache's positions
    queries = ops.arange(ops.shape(token_ids)[1]) + index  # (T,) positions of the new tokens
    # A new token sees the cached positions up to its own (later rows are still zeros).
    causal = ops.less_equal(ops.arange(length)[None, :], queries[:, None])  # (T, S)
    causal = causal[None, None]  # (1, 1, T, S)
    cross_mask = cache.melody_mask[:, None, None, :]  # (B, 1, 1, Lm)
    keys, values = list(cache.keys), list(cache.values)
    for i, block in enumerate(model.decoder_blocks):
        attention = block._self_attention_layer

        def self_attention(h: Any, i: int = i, attention: Any = attention) -> Any:
            start = [0, index, 0]  # write the new tokens' keys/values at index..index+T-1
            keys[i] = ops.slice_update(keys[i], start, _merged_heads(attention._key_dense(h)))
            values[i] = ops.slice_update(values[i], start, _merged_heads(attention._value_dense(h)))
            return _attend(model, attention, h, keys[i], values[i], causal)  # (B, T, D)

        def cross_attention(h: Any, i: int = i, block: Any = block) -> Any:
            return _attend(model, block._cross_attention_layer, h, cache.cross_keys[i],
                           cache.cross_values[i], cross_mask)  # (B, T, D)

        def feedforward(h: Any, block: Any = block) -> Any:
            return block._feedforward_output_dense(block._feedforward_intermediate_dense(h))

        x = _residual(block, block._self_attention_layer_norm, self_attention, x)  # (B, T, D)
        x = _residual(block, block._cross_attention_layer_norm, cross_attention, x)
        x = _residual(block, block._feedforward_layer_norm, feedforward, x)
    cache = cache._replace(keys=tuple(keys), values=tuple(values))
    return model.logits_layer(x), cache  # (B, T, V)


def _attend(
    model: AccompanimentModel, attention: Any, x: Any, keys: Any, values: Any, mask: Any
) -> Any:
    """Multi-head attention of ``x`` (B, T, D) over projected ``keys``/``values``
    (B*H, S, d) where ``mask`` (broadcast to B, H, T, S) is True; output projected."""
    heads, length = model.config.num_heads, ops.shape(x)[1]
    query = _merged_heads(attention._query_dense(x))  # (B*H, T, d)
    scores = ops.einsum("ntd,nsd->nts", query, keys)  # (B*H, T, S)
    scores = ops.reshape(scores, (-1, heads, length, ops.shape(keys)[1]))  # (B, H, T, S)
    # Scores and softmax in float32: stable under a mixed-precision policy.
    scores = ops.cast(scores, "float32") / math.sqrt(model.config.head_dim)
    scores = ops.where(mask, scores, ops.cast(-1e9, "float32"))
    weights = ops.cast(ops.softmax(scores, axis=-1), values.dtype)  # (B, H, T, S)
    weights = ops.reshape(weights, (-1, length, ops.shape(keys)[1]))  # (B*H, T, S)
    out = ops.einsum("nts,nsd->ntd", weights, values)  # (B*H, T, d)
    out = ops.reshape(out, (-1, heads, length, model.config.head_dim))  # (B, H, T, d)
    return attention._output_dense(ops.transpose(out, (0, 2, 1, 3)))  # (B, T, D)
