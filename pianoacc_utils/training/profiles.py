"""Training profiles: data, model size and optimisation settings that belong together.

A :class:`Profile` fixes how POP909 is cut into segments (a
:class:`~pianoacc_utils.prepare.PrepareConfig`), the model size (a
:class:`~pianoacc_utils.models.ModelConfig`, its ``kind`` set per run) and the
optimisation (:class:`TrainConfig`). :data:`PROFILES` has one per machine size: ``quick``
(CI: a few songs, a tiny model), ``small`` (the shipped ``pretrained/`` runs, on CPU
cores), ``cpu`` (a laptop overnight) and ``full`` (a GPU, 32-bar segments). A run's
``config.json`` stores its profile, so :meth:`Profile.from_dict` recovers the exact
settings of any run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pianoacc_utils.common import PianoaccError, config_dict
from pianoacc_utils.models.seq2seq import ModelConfig
from pianoacc_utils.prepare import PrepareConfig

# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Steps are optimizer updates (batches), not epochs.

    ``learning_rate`` is the peak reached after ``warmup_steps``; ``decay`` is
    ``"inverse_sqrt"`` or ``"cosine"`` (cosine reaches 0 at ``decay_steps``).
    ``max_train_segments``/``max_validation_segments`` take a fixed random subset
    (``None``: all). ``length_multiple`` rounds padded batch lengths up (tokens).
    ``mixed_precision`` applies on a GPU only (float16 compute, float32 logits); on CPU
    cores the run times its own steps in float32 and mixed bfloat16 and keeps the faster
    (:mod:`~pianoacc_utils.training.precision`), unless ``cpu_precision`` fixes one
    (``"float32"`` or ``"mixed_bfloat16"``).
    ``harmony_dropout``: share of training segments whose chords are hidden (an
    all-zero harmony table), so that the model also accompanies a melody alone.
    ``checkpoint_steps``: save a step checkpoint every so many optimizer steps, so that
    an interrupted run resumes inside its epoch (``None``: at epoch ends only).
    """

    batch_size: int = 16
    epochs: int = 10
    learning_rate: float = 5e-4
    warmup_steps: int = 1000
    decay: str = "inverse_sqrt"
    decay_steps: int | None = None
    weight_decay: float = 0.01
    clipnorm: float | None = 1.0
    label_smoothing: float = 0.0
    seed: int = 909
    mixed_precision: bool = False
    max_train_segments: int | None = None
    max_validation_segments: int | None = None
    length_multiple: int = 16
    pool_batches: int = 32
    harmony_dropout: float = 0.1
    checkpoint_steps: int | None = None
    cpu_precision: str | None = None


@dataclass(frozen=True)
class Profile:
    """Data, model and training settings that belong together (one per machine size).

    ``model.kind`` is a placeholder: :meth:`model_config` sets the kind of a run.
    """

    name: str
    prepare: PrepareConfig
    model: ModelConfig
    train: TrainConfig
    description: str = dataclasses.field(default="", compare=False)  # prose: not a setting

    def model_config(self, kind: str) -> ModelConfig:
        """The profile's model size with ``kind`` (``"fnet"`` or ``"transformer"``)."""
        return dataclasses.replace(self.model, kind=kind)

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Profile:
        """Inverse of :meth:`to_dict` (e.g. a run's ``config.json["profile"]``)."""
        prep = dict(values["prepare"])
        prep["transpositions"] = tuple(prep["transpositions"])
        return cls(
            name=values["name"],
            prepare=PrepareConfig(**prep),
            model=ModelConfig.from_dict(values["model"]),
            train=TrainConfig(**values["train"]),
            description=values.get("description", ""),
        )


REBAR_SHARES = {"rebar_3_4": 0.2, "rebar_2_4": 0.2}
"""Shares of the training segments every profile re-bars into 3/4 and 2/4
(``PrepareConfig``, ``data.rebar``): POP909 is nearly all 4/4."""


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        description="CI smoke run: 4-bar segments of 100 songs, a tiny model, a few epochs",
        prepare=PrepareConfig(
            bars_per_segment=4, hop_bars=4, songs=100, max_tokens=256, **REBAR_SHARES
        ),
        model=ModelConfig(
            melody_length=128,
            accompaniment_length=256,
            hidden_dim=64,
            num_heads=2,
            intermediate_dim=128,
            encoder_layers=1,
            decoder_layers=1,
            dropout=0.0,
        ),
        train=TrainConfig(
            batch_size=16,
            epochs=3,
            learning_rate=2e-3,
            warmup_steps=30,
            max_train_segments=512,
            max_validation_segments=160,
            cpu_precision="float32",  # 96 steps: timing both would be a large share
        ),
    ),
    "small": Profile(
        name="small",
        description=(
            "the shipped pretrained/ runs, on CPU cores: 8-bar segments of all songs (a fifth "
            "of the training ones re-barred into 3/4, a fifth into 2/4), a 1M-parameter "
            "model, 16 epochs"
        ),
        prepare=PrepareConfig(
            bars_per_segment=8, hop_bars=8, max_tokens=512, **REBAR_SHARES
        ),
        model=ModelConfig(
            melody_length=256,
            accompaniment_length=512,
            hidden_dim=128,
            num_heads=4,
            intermediate_dim=512,
            encoder_layers=2,
            decoder_layers=2,
            dropout=0.0,
        ),
        train=TrainConfig(batch_size=32, epochs=16, learning_rate=1e-3, warmup_steps=400),
    ),
    "cpu": Profile(
        name="cpu",
        description="a laptop for many hours: 8-bar segments (hop 4), transpositions -3..3",
        prepare=PrepareConfig(
            bars_per_segment=8,
            hop_bars=4,
            transpositions=tuple(range(-3, 4)),
            max_tokens=512,
            **REBAR_SHARES,
        ),
        model=ModelConfig(
            melody_length=256,
            accompaniment_length=512,
            hidden_dim=256,
            num_heads=4,
            intermediate_dim=1024,
            encoder_layers=4,
            decoder_layers=4,
            dropout=0.1,
        ),
        train=TrainConfig(
            batch_size=16, epochs=10, learning_rate=5e-4, warmup_steps=2000, checkpoint_steps=1000
        ),
    ),
    "full": Profile(
        name="full",
        description=(
            "a GPU, the original's scale: 32-bar segments, a decoder of 2048 tokens "
            "(most 32-bar accompaniments exceed 1024: notebook 01, docs/data.md)"
        ),
        prepare=PrepareConfig(
            bars_per_segment=32,
            hop_bars=16,
            transpositions=tuple(range(-3, 4)),
            max_tokens=2048,
            **REBAR_SHARES,
        ),
        model=ModelConfig(
            melody_length=1024,
            accompaniment_length=2048,
            hidden_dim=512,
            num_heads=8,
            intermediate_dim=2048,
            encoder_layers=6,
            decoder_layers=6,
            dropout=0.1,
        ),
        train=TrainConfig(
            batch_size=8,
            epochs=30,
            learning_rate=3e-4,
            warmup_steps=4000,
            mixed_precision=True,
            length_multiple=64,
            checkpoint_steps=1000,
        ),
    ),
}


def get_profile(profile: str | Profile) -> Profile:
    """A :data:`PROFILES` entry by name (or the profile itself)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise PianoaccError(f"profile {profile!r}: expected one of {', '.join(PROFILES)}")
    return PROFILES[profile]
