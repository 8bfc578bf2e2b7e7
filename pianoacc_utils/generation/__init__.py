"""TODO generation package."""

from __future__ import annotations

from pianoacc_utils.generation.accompany import (
    CHORD_SOURCES,
    WindowConfig,
    accompany,
    accompany_melodies,
    accompany_segment,
    primer_tokens,
    release_notes,
    segment_chords,
)
from pianoacc_utils.generation.checkpoints import (
    PRETRAINED,
    load_checkpoint,
    pretrained_dir,
    resolve_checkpoint,
)
from pianoacc_utils.generation.decoder import (
    BAR_BUCKET,
    DEFAULT_BARS,
    MELODY_BUCKET,
    TABLE_BEATS,
    CachedDecoder,
    default_bar_lines,
    naive_decode,
    pad_melodies,
)
from pianoacc_utils.generation.sampling import (
    GREEDY,
    IS_VELOCITY,
    NEVER,
    NOTE_ON_CLASS,
    SHIFT_STEPS,
    TOKENIZER,
    SamplingConfig,
    chord_allowed,
    mask_logits,
    velocity_logits,
)
