"""The model stage: the accompaniment model and its cached decoding.

``config``: :class:`ModelConfig` (kind and sizes) and :func:`count_parameters`;
``seq2seq``: the time, meter and harmony signals and :class:`AccompanimentModel` (FNet
or Transformer encoder, Transformer decoder);
``cached``: :func:`init_cache` and :func:`decode_step`, the decoder one token at a time
with key/value caches, what generation runs. Why the model is built as it is:
``docs/model.md``.
"""

from __future__ import annotations

from pianoacc_utils.models.cached import (
    DecoderCache,
    decode_step,
    init_cache,
)
from pianoacc_utils.models.config import KIND_NAMES, KINDS, ModelConfig, count_parameters
from pianoacc_utils.models.seq2seq import (
    BAR_STEPS,
    DEFAULT_BAR_STEPS,
    NO_BAR,
    PAD_ID,
    SHIFT_STEPS,
    AccompanimentModel,
    HarmonyEmbedding,
    TimeEmbedding,
    bar_positions,
    beat_rows,
    build_model,
    dummy_batch,
    pad_bar_lines,
    token_times,
)
