"""The ``pianoacc`` command line: one subcommand per pipeline stage.

Every subcommand turns a :class:`~pianoacc_utils.common.PianoaccError` into one
line on stderr and exit code 1 (2 for usage errors, from argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from pianoacc_utils.common import PianoaccError

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def command(name: str, help_text: str):
    """Register ``add_arguments(parser)`` for a subcommand; the parser's ``func`` runs it."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]):
        add_arguments.help_text = help_text  # type: ignore[attr-defined]
        COMMANDS[name] = add_arguments
        return add_arguments

    return register


# --------------------------------------------------------------------------- prepare


@command("prepare", "POP909 -> token arrays for every split (cached)")
def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output folder (default: the cache)")
    parser.add_argument("--bars", type=int, default=32, help="bars per segment (default 32)")
    parser.add_argument("--hop-bars", type=int, help="bars between segment starts (default: --bars)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="model length for the counts")
    parser.add_argument(
        "--transpose", type=int, default=0, metavar="K", help="augment train with +-K semitones"
    )
    parser.add_argument("--songs", type=int, help="only the first N songs (quick runs)")
    parser.add_argument("--workers", type=int, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> None:
    from pianoacc_utils.dataset import PrepareConfig, load_stats, prepare

    config = PrepareConfig(
        bars_per_segment=args.bars,
        hop_bars=args.hop_bars or args.bars,
        transpositions=tuple(range(-args.transpose, args.transpose + 1)),
        max_tokens=args.max_tokens,
        songs=args.songs,
    )
    folder = prepare(config, out=args.out, workers=args.workers, force=args.force)
    stats = load_stats(folder)
    print(f"prepared: {folder}  ({stats['seconds']} s, {stats['workers']} workers)")
    header = f"{'split':<11}{'songs':>7}{'segments':>10}{'melody tok':>12}{'accomp tok':>12}"
    print(header + f"{'> ' + str(stats['max_tokens']) + ' (mel/acc)':>20}")
    for name, row in stats["splits"].items():
        over = f"{row['melody_over_max']}/{row['accompaniment_over_max']}"
        print(
            f"{name:<11}{row['songs']:>7}{row['segments']:>10}"
            f"{row['melody_tokens']:>12}{row['accompaniment_tokens']:>12}{over:>20}"
        )
    for song_id, reason in stats["skipped"].items():
        print(f"skipped {song_id}: {reason}")


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pianoacc", description="Melody-conditioned piano accompaniment (POP909)."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, add_arguments in COMMANDS.items():
        add_arguments(subparsers.add_parser(name, help=add_arguments.help_text))  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a reported error, 2 usage)."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PianoaccError as error:
        print(f"pianoacc {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pianoacc {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def print_json(payload: object) -> None:
    """Pretty-print a JSON-ready object (used by subcommands that report results)."""
    print(json.dumps(payload, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
