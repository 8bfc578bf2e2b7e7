"""Training stage: prepared token arrays -> a trained accompaniment model in a run folder.

``profiles`` (settings per machine size), ``batches`` (teacher-forced, padded batches),
``loss`` (masked cross-entropy, metrics, learning-rate schedule), ``devices``
(distribution strategy, mixed precision), ``precision`` (the CPU precision, chosen by
timing the run's own steps), ``checkpoints`` (what a run folder commits
and how a resume recovers it), ``loop`` (train, resume, read a run back),
``export`` (ship a run with its model card) and ``step_time`` (each encoder's
training-step time at growing lengths). ``precision`` and ``step_time`` build what they
time; the timing itself is :mod:`pianoacc_utils.backends.speed`.
"""

from __future__ import annotations

from pianoacc_utils.training.batches import (
    END_ID,
    PAD_ID,
    START_ID,
    SegmentBatches,
    collate,
    median_length_batch,
    pad_batch,
    padded_length,
    padded_lengths,
    segment_batch,
    teacher_forcing,
    typical_batch,
)
from pianoacc_utils.training.checkpoints import (
    RunCheckpoints,
    read_history,
    recover,
    settings_difference,
)
from pianoacc_utils.training.devices import (
    CPU_PRECISION_VARIABLE,
    StrategyInfo,
    cpu_precision,
    has_bfloat16_units,
    pick_strategy,
    precision_policy,
    training_precision,
)
from pianoacc_utils.training.export import (
    export_run,
)
from pianoacc_utils.training.loop import (
    first_stage_profile,
    is_finished_run,
    run_profile,
    train,
    train_or_reuse,
)
from pianoacc_utils.training.loss import (
    MaskedAccuracy,
    MaskedSparseCrossentropy,
    Perplexity,
    WarmupSchedule,
    compile_model,
    token_crossentropy,
)
from pianoacc_utils.training.precision import (
    LossCheck,
    PrecisionChoice,
    bfloat16_keeps_the_loss,
    choose_cpu_precision,
    loss_check,
)
from pianoacc_utils.training.profiles import (
    PROFILES,
    REBAR_SHARES,
    Profile,
    TrainConfig,
    get_profile,
)
from pianoacc_utils.training.step_time import (
    measure_step_time,
)
