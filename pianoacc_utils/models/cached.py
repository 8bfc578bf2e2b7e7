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

Several rows may share one prompt (the candidates of one window, sampled side by side):
then the prompt's keys and values are kept once per window (:class:`SharedPrefix`, made
by :func:`share_prefix`), as are the melody's, and each row caches only the tokens it
generates itself. A step then reads the shared keys once for all the window's rows and
each row's own tokens (the first :data:`RECENT` every step, later ones only once there
are any), instead of every row's copy of the whole cache: reading the caches was most of
a step's cost. The attention is the same, its softmax taken in parts and
joined (the sums in another order: the same values to float rounding).

Shapes: ``B`` batch, ``T`` new tokens, ``H`` heads, ``S`` cached positions, ``d`` head_dim,
``W`` windows (``B / W`` rows each) where rows share a prefix.
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


class SharedPrefix(NamedTuple):
    """Self-attention keys and values of the prompt the rows of each window share, one
    row per window: ``keys``/``values`` per layer ``(W*heads, S, head_dim)``; positions
    ``0..length-1`` are the prompt's (``length`` a scalar). ``later_keys``/``later_values``
    per layer ``(B*heads, S - RECENT + 1, head_dim)``: each row's own tokens after its
    first :data:`RECENT` (those are in the cache's ``keys``/``values``, :func:`own_slots`)."""

    keys: tuple[Any, ...]
    values: tuple[Any, ...]
    length: Any
    later_keys: tuple[Any, ...]
    later_values: tuple[Any, ...]


class DecoderCache(NamedTuple):
    """State of cached decoding, one entry per decoder layer.

    ``keys``/``values``: self-attention keys and values ``(B*heads, max_length,
    head_dim)`` (batch and heads in one leading axis: two 3-D products per attention
    instead of 4-D ones); ``cross_keys``/``cross_values``: the projected encoder output
    ``(B*heads, Lm, head_dim)``; ``melody_mask`` (B, Lm): real melody positions;
    ``harmony``: the harmony table (B, beats, 24) of the window, or ``None``;
    ``bars``: its bar lines (B, K), or ``None``; ``prefix``: the :class:`SharedPrefix`
    of rows that share their prompt, or ``()`` where they do not (a loop's state may not
    hold ``None`` under TensorFlow). With a prefix, ``keys``/``values`` hold each row's
    first :data:`RECENT` own tokens only (:func:`own_slots`), and ``cross_keys``,
    ``cross_values`` and ``melody_mask`` are one row per window.
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
    prefix: SharedPrefix | tuple = ()


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
    windows = ops.shape(cache.melody_mask)[0]  # W: B, unless rows share a prefix
    keys, values = list(cache.keys), list(cache.values)
    later = None if not cache.prefix else [cache.prefix, list(cache.prefix.later_keys),
                                               list(cache.prefix.later_values)]
    for i, block in enumerate(model.decoder_blocks):
        attention = block._self_attention_layer

        def self_attention(h: Any, i: int = i, attention: Any = attention) -> Any:
            if cache.prefix:  # the window's prompt apart, each row's own tokens
                return _attend_shared(model, attention, h, keys, values, later, i, index)
            start = [0, index, 0]  # write the new tokens' keys/values at index..index+T-1
            keys[i] = ops.slice_update(keys[i], start, _merged_heads(attention._key_dense(h)))
            values[i] = ops.slice_update(values[i], start, _merged_heads(attention._value_dense(h)))
            return _attend(model, attention, h, keys[i], values[i], causal)  # (B, T, D)

        def cross_attention(h: Any, i: int = i, block: Any = block) -> Any:
            layer = block._cross_attention_layer
            if cache.prefix:  # the melody's keys once per window
                query = _grouped(layer._query_dense(h), windows)  # (W*H, C*T, d)
                part = _part(model, query, cache.cross_keys[i], cache.cross_values[i],
                             cache.melody_mask[:, None, None, :], windows, ops.shape(h)[1])
                return _output(model, layer, _joined([_ungrouped(part, windows)]), h)
            return _attend(model, layer, h, cache.cross_keys[i],
                           cache.cross_values[i], cross_mask)  # (B, T, D)

        def feedforward(h: Any, block: Any = block) -> Any:
            return block._feedforward_output_dense(block._feedforward_intermediate_dense(h))

        x = _residual(block, block._self_attention_layer_norm, self_attention, x)  # (B, T, D)
        x = _residual(block, block._cross_attention_layer_norm, cross_attention, x)
        x = _residual(block, block._feedforward_layer_norm, feedforward, x)
    cache = cache._replace(keys=tuple(keys), values=tuple(values))
    if later is not None:
        cache = cache._replace(prefix=cache.prefix._replace(later_keys=tuple(later[1]),
                                                            later_values=tuple(later[2])))
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


# --------------------------------------------------------------------------- a shared prefix

RECENT = 128
"""A row's first own tokens (after the shared prompt), kept in a buffer that every step
reads; its later ones go to a second buffer, read only on the steps after a row has
generated more than this many (a window adding 2 bars rarely does)."""


def share_prefix(cache: DecoderCache, rows: int, length: Any) -> DecoderCache:
    """``cache``, filled by a prompt of W windows, made the cache of ``rows`` rows (a
    multiple of W, each window's rows together) that share it: its self-attention
    keys/values become the :class:`SharedPrefix` (positions ``0..length-1``), each row
    gets empty caches of its own (:func:`own_slots`) and its window's harmony and bar
    lines; the melody's keys/values stay one per window."""
    windows = ops.shape(cache.melody_mask)[0]
    group = ops.arange(rows) // (rows // windows)  # each row's window
    count, size, dim = ops.shape(cache.keys[0])
    recent = min(RECENT, size)

    def own(slots: int) -> Any:
        return tuple(ops.zeros((rows * (count // windows), slots, dim), x.dtype)
                     for x in cache.keys)

    def take(x: Any) -> Any:
        return None if x is None else ops.take(x, group, axis=0)

    prefix = SharedPrefix(cache.keys, cache.values, length, own(size - recent + 1),
                          own(size - recent + 1))
    return cache._replace(keys=own(recent + 1), values=own(recent + 1), harmony=take(cache.harmony),
                          bars=take(cache.bars), prefix=prefix)


def _grouped(x: Any, windows: int) -> Any:
    """(B, T, H, d) -> (W*H, C*T, d): the C rows of each window as the queries of one
    attention per window and head."""
    batch, length, heads, dim = ops.shape(x)
    rows = batch // windows
    x = ops.reshape(x, (windows, rows, length, heads, dim))
    return ops.reshape(ops.transpose(x, (0, 3, 1, 2, 4)), (windows * heads, rows * length, dim))


def _ungrouped(part: tuple, windows: int) -> tuple:
    """A :func:`_part` of grouped queries (W*H, C*T, .) back to rows (B*H, T, .)."""
    def back(x: Any, length: int) -> Any:
        count, queries, last = ops.shape(x)
        heads = count // windows
        x = ops.reshape(x, (windows, heads, queries // length, length, last))
        return ops.reshape(ops.transpose(x, (0, 2, 1, 3, 4)), (-1, length, last))

    length = part[3]
    return (*(back(x, length) for x in part[:3]), length)


def _part(model: AccompanimentModel, query: Any, keys: Any, values: Any, mask: Any,
          windows: int | None = None, length: int = 1) -> tuple:
    """Attention of ``query`` (N, Q, d) over ``keys``/``values`` (N, S, d) where ``mask``
    holds (broadcast to (N, Q, S), or to (W, H, Q, S) with ``windows``), before the
    softmax is normalised: the scores' maximum (N, Q, 1), the sum of their exponentials
    (N, Q, 1) and the values weighted by them (N, Q, d), in float32, and ``length``
    (queries per row, for :func:`_ungrouped`). Parts over different keys are joined by
    :func:`_joined`."""
    scores = ops.einsum("nqd,nsd->nqs", query, keys)
    scores = ops.cast(scores, "float32") / math.sqrt(model.config.head_dim)
    if windows is not None:  # a mask per window (W, 1, 1, S): scores as (W, H, Q, S)
        shape = ops.shape(scores)
        scores = ops.reshape(scores, (windows, shape[0] // windows, shape[1], shape[2]))
        scores = ops.reshape(ops.where(mask, scores, -1e9), shape)
    else:
        scores = ops.where(mask, scores, ops.cast(-1e9, "float32"))
    top = ops.max(scores, axis=-1, keepdims=True)
    weights = ops.exp(scores - top)
    total = ops.sum(weights, axis=-1, keepdims=True)
    out = ops.einsum("nqs,nsd->nqd", ops.cast(weights, values.dtype), values)
    return top, total, ops.cast(out, "float32"), length


def _joined(parts: list[tuple]) -> Any:
    """The softmax attention over all the parts' keys together (N, Q, d), float32."""
    top = parts[0][0]
    for part in parts[1:]:
        top = ops.maximum(top, part[0])
    total = out = 0.0
    for part_top, part_total, part_out, _ in parts:
        scale = ops.exp(part_top - top)
        total = total + part_total * scale
        out = out + part_out * scale
    return out / total


def _output(model: AccompanimentModel, attention: Any, out: Any, x: Any) -> Any:
    """Attention output (B*H, T, d) float32 -> the layer's projected output (B, T, D)."""
    heads, length = model.config.num_heads, ops.shape(x)[1]
    out = ops.cast(out, x.dtype)
    out = ops.reshape(out, (-1, heads, length, model.config.head_dim))  # (B, H, T, d)
    return attention._output_dense(ops.transpose(out, (0, 2, 1, 3)))  # (B, T, D)


def own_slots(slot: Any, recent: int) -> tuple[Any, Any]:
    """Where a row's own token number ``slot`` (0: its first after the prompt) goes: slot
    ``slot`` of its first :data:`RECENT` (``keys``, ``recent + 1`` slots) and slot
    ``slot - recent + 1`` of the later ones (``later_keys``); the other buffer's spare
    slot (``recent``, or 0) takes the write, unread. Two buffers, each read whole: XLA
    copies a buffer written in place on every step when a slice of it is read."""
    return ops.minimum(slot, recent), ops.maximum(slot - recent + 1, 0)


def _attend_shared(model: AccompanimentModel, attention: Any, x: Any, keys: list, values: list,
                   later: list, layer: int, index: Any) -> Any:
    """Self-attention of ``x`` (B, 1, D), the token at position ``index``, over the window's
    shared prompt and the row's own tokens (``later``: the :class:`SharedPrefix` and lists
    of its ``later_keys``/``later_values``): its key and value written first, then up to
    three parts, joined."""
    prefix = later[0]
    if ops.shape(x)[1] != 1:
        raise PianoaccError("rows that share a prompt decode one token at a time")
    query = attention._query_dense(x)  # (B, 1, H, d)
    windows = ops.shape(prefix.keys[layer])[0] // model.config.num_heads
    recent = ops.shape(keys[layer])[1] - 1
    slot = index - prefix.length  # the token's number among the row's own
    first, then = own_slots(slot, recent)
    new_key = _merged_heads(attention._key_dense(x))  # (B*H, 1, d)
    new_value = _merged_heads(attention._value_dense(x))
    keys[layer] = ops.slice_update(keys[layer], [0, first, 0], new_key)
    values[layer] = ops.slice_update(values[layer], [0, first, 0], new_value)
    later[1][layer] = ops.slice_update(later[1][layer], [0, then, 0], new_key)
    later[2][layer] = ops.slice_update(later[2][layer], [0, then, 0], new_value)
    # The prompt: every row of a window asks the same keys, read once.
    size = ops.shape(prefix.keys[layer])[1]
    shared = _part(model, _grouped(query, windows), prefix.keys[layer], prefix.values[layer],
                   (ops.arange(size) < prefix.length)[None, None, None, :], windows)
    merged = _merged_heads(query)  # (B*H, 1, d)
    slots = ops.arange(recent + 1)
    parts = [_ungrouped(shared, windows),  # then the row's first RECENT tokens, every step
             _part(model, merged, keys[layer], values[layer],
                   ((slots <= slot) & (slots < recent))[None, None, :])]
    later_slots = ops.arange(ops.shape(later[1][layer])[1]) + recent - 1
    mask = ((later_slots >= recent) & (later_slots <= slot))[None, None, :]

    def more() -> tuple:  # its later tokens, once there are any
        return _part(model, merged, later[1][layer], later[2][layer], mask)[:3]

    def none() -> tuple:
        rows, dim = ops.shape(merged)[0], model.config.head_dim
        return (ops.full((rows, 1, 1), -1e9, "float32"), ops.zeros((rows, 1, 1), "float32"),
                ops.zeros((rows, 1, dim), "float32"))

    parts.append((*ops.cond(slot >= recent, more, none), 1))
    return _output(model, attention, _joined(parts), x)
