"""A tiny model configuration and token helpers shared by the model-level tests
(``from tiny import TINY, on, off, shift``; pytest puts ``tests/`` on the path).

Tiny enough to build and run in a fraction of a second on a CPU; tests that need
other sizes override single keys (``{**TINY, "decoder_layers": 1}``).
"""

from __future__ import annotations

from pianoacc_utils.tokenizer import EventTokenizer

TOKENIZER = EventTokenizer()

TINY = {
    "melody_length": 64,
    "accompaniment_length": 64,
    "hidden_dim": 32,
    "num_heads": 2,
    "intermediate_dim": 64,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "dropout": 0.0,
}
"""``ModelConfig`` keywords (all but ``kind``) of a tiny model."""

JAX_TINY_ENV = {
    "KERAS_BACKEND": "jax",
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_backend_optimization_level=0",
}
"""Environment of a fresh process that runs tiny models under JAX. Their time goes to
compiling a few hundred small programs (every eager operation is one), which XLA does
in about two thirds of the time without LLVM's optimisation passes; the values they
compute, which the tests check, do not depend on those passes beyond float round-off."""


def on(pitch: int) -> int:
    """Token id of a note-on."""
    return TOKENIZER.token_id(f"NOTE_ON_{pitch}")


def off(pitch: int) -> int:
    """Token id of a note-off."""
    return TOKENIZER.token_id(f"NOTE_OFF_{pitch}")


def shift(steps: int) -> int:
    """Token id of a time shift of ``steps`` grid steps (1..32)."""
    return TOKENIZER.token_id(f"TIME_SHIFT_{steps}")
