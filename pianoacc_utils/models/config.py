"""The model's settings, and what is read from a model without running it.

:class:`ModelConfig` fixes the kind of melody encoder and every size of
:class:`~pianoacc_utils.models.AccompanimentModel`; it is saved inside each checkpoint,
so a model file rebuilds itself. :func:`count_parameters` splits a model's weights by part.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from pianoacc_utils.common import PianoaccError, config_dict
from pianoacc_utils.tokenizer import EventTokenizer

KINDS = ("fnet", "transformer")
KIND_NAMES = {"fnet": "FNet", "transformer": "Transformer"}
"""How tables and figures name each kind."""


@dataclass(frozen=True)
class ModelConfig:
    """Size and kind of an :class:`AccompanimentModel` (saved with it: ``get_config``)."""

    kind: str = "fnet"  # the melody encoder: "fnet" or "transformer"
    vocabulary_size: int = EventTokenizer().vocabulary_size
    melody_length: int = 256  # longest melody (tokens) the position table covers
    accompaniment_length: int = 512  # longest decoder input (tokens, with START)
    hidden_dim: int = 256  # D, divisible by num_heads
    num_heads: int = 4
    intermediate_dim: int = 1024  # feed-forward width in every block
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    fnet_full_length: bool = True  # FNet mixes all melody_length positions: padding-invariant
    time_embedding: bool = True  # add step-in-beat and beat embeddings of each token's time
    max_beats: int = 256  # rows of the beat table (later beats share the last)
    harmony: bool = True  # add a projection of the chord of each token's beat
    meter: bool = True  # add the step since the last bar line

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PianoaccError(f"model kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.hidden_dim % self.num_heads:
            raise PianoaccError(
                f"model config: hidden_dim {self.hidden_dim} is not divisible by "
                f"num_heads {self.num_heads}"
            )

    @property
    def head_dim(self) -> int:
        """Size of one attention head (``hidden_dim // num_heads``)."""
        return self.hidden_dim // self.num_heads

    def to_json(self) -> str:
        """The config as a JSON object string."""
        return json.dumps(config_dict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Rebuild from :func:`~pianoacc_utils.common.config_dict` output; unknown keys fail."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise PianoaccError(f"model config: unknown fields {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def count_parameters(model: Any) -> dict[str, int]:
    """Weights per part of an :class:`~pianoacc_utils.models.AccompanimentModel`:
    ``embeddings`` (token+position tables, time tables, chord projection), ``encoder``,
    ``decoder`` (blocks), ``output`` (logits layer), ``total``."""
    signals = [model.time_embedding, model.harmony_embedding]
    parts = {
        "embeddings": [model.melody_embedding, model.accompaniment_embedding]
        + [layer for layer in signals if layer is not None],
        "encoder": model.encoder_blocks,
        "decoder": model.decoder_blocks,
        "output": [model.logits_layer],
    }
    counts = {name: int(sum(p.count_params() for p in layers)) for name, layers in parts.items()}
    return {**counts, "total": int(model.count_params())}
