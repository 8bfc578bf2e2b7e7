"""What the ``pianoacc`` subcommands share: the registry of subcommands and the options
that more than one of them takes."""

from __future__ import annotations

import argparse
import math
from typing import Callable

from pianoacc_utils.defaults import (
    COMPOUND_MODES,
    DEFAULT_CANDIDATES,
    DEFAULT_CHORD_MASK,
    DEFAULT_COMPOUND,
    DEFAULT_NOTE_OFF_BIAS,
    DEFAULT_RELEASE,
    DEFAULT_VELOCITY_TEMPERATURE,
    HANGING_BEATS,
    MAX_CANDIDATES,
    MAX_HELD_BEATS,
)

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def command(name: str, help_text: str):
    """Register ``add_arguments(parser)`` for a subcommand; the parser's ``func`` runs it."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]):
        add_arguments.help_text = help_text  # type: ignore[attr-defined]
        COMMANDS[name] = add_arguments
        return add_arguments

    return register


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def harmony_rule_arguments(parser: argparse.ArgumentParser) -> None:
    """``--chord-mask``/``--no-chord-mask``, ``--release``/``--no-release`` and
    ``--hanging-beats``."""
    parser.add_argument(
        "--chord-mask", action=argparse.BooleanOptionalAction, default=DEFAULT_CHORD_MASK,
        help="allow only note-ons of the current chord's tones when chords are known "
        f"(default {'on' if DEFAULT_CHORD_MASK else 'off'})",
    )
    parser.add_argument(
        "--release", action=argparse.BooleanOptionalAction, default=DEFAULT_RELEASE,
        help="shorten notes at chord changes that leave them out and after "
        f"{MAX_HELD_BEATS} beats (default {'on' if DEFAULT_RELEASE else 'off'})",
    )
    parser.add_argument(
        "--hanging-beats", type=positive_float, default=HANGING_BEATS, metavar="BEATS",
        help="with --release, notes the model never ended last at most this many beats "
        f"(default {HANGING_BEATS:g})",
    )


def velocity_temperature_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--velocity-temperature", type=positive_float, metavar="T",
        default=DEFAULT_VELOCITY_TEMPERATURE,
        help="temperature of the choice among velocity tokens (default "
        f"{DEFAULT_VELOCITY_TEMPERATURE:g}); higher values vary the dynamics more, the "
        "value of --temperature treats them like every other token",
    )


def kind_temperature_arguments(parser: argparse.ArgumentParser) -> None:
    """--shift-temperature and --pitch-temperature: ``SamplingConfig``'s temperatures of
    the choice among time shifts and among note-ons (default: --temperature's)."""
    for kind, what in (("shift", "time shifts (how long to wait)"),
                       ("pitch", "note-ons (which pitch to strike)")):
        parser.add_argument(
            f"--{kind}-temperature", type=positive_float, metavar="T", default=None,
            help=f"temperature of the choice among {what}; default: --temperature's "
            "(results/critic_temperatures.md measured others against the critic)",
        )


def finite_float(text: str) -> float:
    """A finite number (argparse type)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def note_off_bias_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--note-off-bias", type=finite_float, metavar="NATS", default=DEFAULT_NOTE_OFF_BIAS,
        help="added to every note-off logit (default "
        f"{DEFAULT_NOTE_OFF_BIAS:g}); below 0 notes are held longer, above 0 shorter",
    )


def candidates_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--candidates", type=int, metavar="N", default=DEFAULT_CANDIDATES,
        help=f"sample N candidates for every window and keep the one the reranker finds most "
        f"like a pianist (1..{MAX_CANDIDATES}; default {DEFAULT_CANDIDATES}; 1: no reranking, "
        "the fastest; docs/generation.md says what each costs)",
    )


def overlap_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overlap-bars", type=int, metavar="N",
        help="bars of each window primed by the accompaniment already made (default: "
        "three quarters of the model's window, 6 of the shipped models' 8: each window adds "
        "2 bars; fewer: fewer, longer windows, docs/generation.md says what each costs)",
    )


def compound_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compound", choices=COMPOUND_MODES, default=DEFAULT_COMPOUND,
        help="compound meters (6/8, 9/8, 12/8): swing (default) has the model accompany "
        "each dotted beat as a plain beat (its first two thirds as the first half) and "
        "swings the result back; plain gives the model the bars as they are",
    )
