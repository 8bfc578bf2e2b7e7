"""Judging accompaniments: the last stage of the pipeline.

``metrics`` holds the pure metrics (notes and a grid in, one number out);
``runs`` runs systems (the models, the block-chord baseline, the ground truth) on the
test segments; ``summary`` aggregates per-segment values with bootstrap intervals;
``reports`` checks the quality bar and assembles what ``pianoacc evaluate`` writes;
``melodies`` judges accompaniments of melodies from outside POP909, which have no
ground truth; ``critic`` trains classifiers to tell a system from the pianist
(``generation.critic_features``: what they hear, ``critic_network``: the learned one).
Definitions and reasons: ``docs/metrics.md``.
"""

from __future__ import annotations

from pianoacc_utils.evaluation.melodies import (
    MELODY_METRICS,
    MELODY_TABLE_METRICS,
    TRIPLET_BEATS,
    evaluate_melodies,
    melodies_markdown,
    melody_beat_seconds,
    melody_grid_share,
    melody_metrics,
)
from pianoacc_utils.evaluation.metrics import (
    BAR_CLOSENESS_SIGMA_BEATS,
    BAR_OFF_BEATS,
    BAR_SHIFT_LIMIT_BEATS,
    BAR_SHIFT_RESOLUTION_BEATS,
    BAR_WEIGHT_MAX_BEATS,
    COINCIDENCE_SECONDS,
    CONSONANT_INTERVALS,
    DEFAULT_BEAT_SECONDS,
    DOWNBEAT_WEIGHT,
    GRID_TOLERANCE_SECONDS,
    METRIC_LEVELS,
    METRICS,
    NOTE_FEATURE_BINS,
    OVERLAP_BINS,
    SIXTEENTH_BEATS,
    TEXTURE_METRICS,
    bar_offsets,
    chord_pitch_classes,
    chord_tone_ratio,
    ending_offset_bars,
    grid_share,
    key_agreement,
    mean_bar_steps,
    melody_beat_coverage,
    melody_consonance,
    notes_per_bar,
    overlapping_area,
    pitch_range,
    polyphony,
    segment_metrics,
    silent_bar_share,
    velocity_std,
)
from pianoacc_utils.evaluation.reports import (
    COMPARISON_GROUPS,
    MEAN_METRICS,
    compare_models,
    evaluation_report,
    quality_bar,
    report_result,
)
from pianoacc_utils.evaluation.runs import (
    BASELINE_BASS_LOWEST,
    BASELINE_CHORD_ROOT,
    BASELINE_VELOCITY,
    EvaluationConfig,
    block_chord_baseline,
    estimated_chord_agreement,
    evaluation_critic,
    evaluate_checkpoints,
    evaluate_systems,
    generate_for_segments,
    segment_beat_seconds,
    split_segments,
    system_name,
    teacher_forced_metrics,
)
from pianoacc_utils.evaluation.summary import (
    GROUND_TRUTH,
    RESULT_FIELDS,
    SUMMARY_FIELDS,
    EvaluationResult,
    bootstrap_ci,
    summarize,
)
from pianoacc_utils.evaluation.pianism import (
    CHROMA_THRESHOLD,
    LOW_REGISTER_TOP,
    PHRASE_BARS,
    PIANISM_METRICS,
    STRONG_BEAT_TOLERANCE_STEPS,
    bar_onset_patterns,
    bar_pitch_classes,
    harmonic_motion,
    harmonic_variety,
    median_duration,
    onset_histogram,
    onset_repetition,
    pianism_metrics,
    rhythm_distance,
    strong_beat_bass,
    strong_beats,
    voicing_spread,
)
from pianoacc_utils.evaluation.copying import (
    COPY_METRICS,
    COPY_WINDOW_BARS,
    CopyIndex,
    CopyIndexConfig,
    bar_windows,
    build_copy_index,
    copy_index_path,
    copy_metrics,
    load_copy_index,
    window_fingerprint,
)
from pianoacc_utils.evaluation.reference import (
    PIANIST_PERCENTILES,
    REFERENCE_SPLIT,
    load_reference,
    pianist_reference,
)
from pianoacc_utils.evaluation.reports import (
    report_markdown,
    seed_statistic,
    seed_summary,
)
from pianoacc_utils.generation.critic_features import (
    CRITIC_BARS,
    ROLL_CHANNELS,
    CriticWindow,
    critic_windows,
    feature_matrix,
    feature_names,
    window_features,
    window_roll,
)
from pianoacc_utils.evaluation.critic import (
    CONTROLS,
    CRITICS,
    CriticConfig,
    CriticPiece,
    critic_markdown,
    critic_report,
    feature_aucs,
    grouped_folds,
    piece_windows,
    segment_piece,
    song_bootstrap_ci,
    two_sample_test,
)
from pianoacc_utils.evaluation.critic_network import RollCritic, roll_critic_model
from pianoacc_utils.evaluation.harmonisation import (
    HARMONISATION_METRICS,
    PCS_SCORES,
    PROPER_STEP,
    TONAL_RADII,
    bar_line_changes,
    cc,
    che,
    ctd,
    ctnctr,
    exact_beat_agreement,
    harmonisation_metrics,
    mctd,
    pcs,
    tonal_centroid,
)
