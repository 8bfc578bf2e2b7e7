"""TODO training package."""

from __future__ import annotations

from pianoacc_utils.training.batches import (
    END_ID,
    PAD_ID,
    START_ID,
    SegmentBatches,
    pad_batch,
    padded_length,
    teacher_forcing,
)
from pianoacc_utils.training.devices import (
    StrategyInfo,
    pick_strategy,
    precision_policy,
)
from pianoacc_utils.training.loop import (
    export_run,
    is_finished_run,
    read_history,
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
)
from pianoacc_utils.training.profiles import (
    PROFILES,
    REBAR_SHARES,
    Profile,
    TrainConfig,
    get_profile,
)
from pianoacc_utils.training.speed import (
    measure_step_time,
)
