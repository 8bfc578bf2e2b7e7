"""Generation: a melody (and its chords) in, accompaniment notes out.

Three layers, from the inside out:

* :mod:`~pianoacc_utils.generation.sampling`: the sampling rule, how a step's logits
  become a token (temperature, top-p, the velocity temperature, the window and chord masks);
* :mod:`~pianoacc_utils.generation.decoder`: :class:`CachedDecoder`, the compiled loop
  that decodes one batch of windows token by token with the key/value cache of
  :mod:`pianoacc_utils.models.cached`;
* :mod:`~pianoacc_utils.generation.accompany`: the window loop over a whole melody
  (overlapping windows primed with the accompaniment already made, bar lines and chords
  per window, hanging notes released by :mod:`~pianoacc_utils.generation.release`), for
  POP909 segments and for MIDI melodies;
  :mod:`~pianoacc_utils.generation.rerank` optionally samples several candidates per
  window and keeps the one a classifier trained on the training split finds most like
  the pianist.

:mod:`~pianoacc_utils.generation.checkpoints` loads the shipped models or a training
run's checkpoint with the window it was trained on.
"""

from __future__ import annotations

from pianoacc_utils.generation.accompany import (
    CHORD_SOURCES,
    Job,
    Window,
    WindowConfig,
    accompany,
    accompany_melodies,
    accompany_segment,
    advance_position,
    decode_windows,
    job_tonic,
    keep_new_notes,
    next_window,
    plan_jobs,
    primer_tokens,
    segment_chords,
    window_arrays,
)
from pianoacc_utils.generation.checkpoints import (
    OWN_RERANKER,
    PRETRAINED,
    candidate_reranker,
    checkpoint_reranker,
    checkpoint_window,
    default_window,
    load_checkpoint,
    pretrained_dir,
    reranker_file,
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
from pianoacc_utils.generation.release import release_notes
from pianoacc_utils.generation.rerank import (
    RERANKER_FILE,
    Reranker,
    TreeEnsemble,
    candidate_score,
    shipped_reranker,
)
from pianoacc_utils.generation.sampling import (
    GREEDY,
    IS_NOTE_OFF,
    IS_VELOCITY,
    NEVER,
    NOTE_ON_CLASS,
    SHIFT_STEPS,
    SHORTLIST,
    TOKENIZER,
    SamplingConfig,
    ShortlistTopPSampler,
    chord_allowed,
    kind_logits,
    mask_logits,
    note_off_logits,
    shape_logits,
    velocity_logits,
)
