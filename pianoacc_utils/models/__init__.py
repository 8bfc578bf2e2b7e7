"""TODO models package."""

from __future__ import annotations

from pianoacc_utils.models.cached import (
    DecoderCache,
    decode_step,
    init_cache,
)
from pianoacc_utils.models.seq2seq import (
    BAR_STEPS,
    DEFAULT_BAR_STEPS,
    KINDS,
    NO_BAR,
    PAD_ID,
    SHIFT_STEPS,
    AccompanimentModel,
    HarmonyEmbedding,
    ModelConfig,
    TimeEmbedding,
    bar_positions,
    beat_rows,
    build_model,
    count_parameters,
    pad_bar_lines,
    token_times,
)
