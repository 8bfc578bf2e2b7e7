"""The ``pianoacc`` command line: one subcommand per pipeline stage.

Every subcommand turns a :class:`~pianoacc_utils.common.PianoaccError` into one
line on stderr and exit code 1 (2 for usage errors, from argparse).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import keras

from pianoacc_utils import STARTED, generation, training
from pianoacc_utils.audio import render_wav
from pianoacc_utils.backends.timings import Stopwatch
from pianoacc_utils.cli.options import (
    COMMANDS,
    command,
    compound_argument,
    harmony_rule_arguments,
    candidates_argument,
    overlap_argument,
    note_off_bias_argument,
    kind_temperature_arguments,
    velocity_temperature_argument,
)
from pianoacc_utils.common import PianoaccError, cache_dir, check_outputs
from pianoacc_utils.course.notebooks import refresh_notebooks, run_notebooks
from pianoacc_utils.data.compound import bar_units
from pianoacc_utils.data.melody_midi import load_melody, write_arrangement
from pianoacc_utils.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from pianoacc_utils.generation import (
    SamplingConfig,
    accompany_melodies,
    load_checkpoint,
    resolve_checkpoint,
)
from pianoacc_utils.generation.prebuild import prebuild_programs
from pianoacc_utils.harmony import chord_coverage, learned_chords
from pianoacc_utils.harmony.chords import read_chord_file
from pianoacc_utils.prepare import PrepareConfig, load_stats, prepare

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
    parser.add_argument(
        "--rebar-3-4", type=float, default=0.0, metavar="SHARE",
        help="share of training segments re-barred into 3/4 (default 0)",
    )
    parser.add_argument(
        "--rebar-2-4", type=float, default=0.0, metavar="SHARE",
        help="share of training segments re-barred into 2/4 (default 0)",
    )
    parser.add_argument("--workers", type=int, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> None:
    config = PrepareConfig(
        bars_per_segment=args.bars,
        hop_bars=args.hop_bars or args.bars,
        transpositions=tuple(range(-args.transpose, args.transpose + 1)),
        max_tokens=args.max_tokens,
        songs=args.songs,
        rebar_3_4=args.rebar_3_4,
        rebar_2_4=args.rebar_2_4,
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


# --------------------------------------------------------------------------- notebooks, page


@command("notebooks", "execute the notebooks in order with papermill (make run)")
def _notebooks_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default="quick", choices=tuple(training.PROFILES), help="default quick"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("build/notebooks"), help="executed copies go here"
    )
    parser.add_argument(
        "--figures", type=Path, default=Path("figures"), help="where notebooks save figures"
    )
    parser.add_argument("--only", help="comma-separated notebooks, e.g. 01,02 (default: all)")
    parser.add_argument("--refresh", action="store_true", help="re-run the committed notebooks")
    parser.set_defaults(func=_notebooks)


def _notebooks(args: argparse.Namespace) -> None:
    only = [name for name in args.only.split(",") if name.strip()] if args.only else None
    if args.refresh:  # the committed notebooks, run again and written back
        return print(f"refreshed: {len(refresh_notebooks(args.profile, only, verbose=True))}")
    executed = run_notebooks(
        profile=args.profile, out=args.out, figures=args.figures, only=only, verbose=True
    )
    print(f"executed {len(executed)} notebook(s) with profile {args.profile} into {args.out}")


@command("report", "the listening page: test songs and folk tunes to hear (HTML, MP3)")
def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="build/listen", help="the page's folder")
    parser.add_argument("--songs", help="POP909 test songs (default 186,002,004,010)")
    parser.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> None:
    options = ["--out", args.out] + (["--songs", args.songs] if args.songs else [])
    # In its own process: the page loads matplotlib and pandas, which no other command needs
    if subprocess.run([sys.executable, "-m", "pianoacc_utils.course.report", *options]).returncode:
        raise SystemExit(1)  # the page's process printed the error


# --------------------------------------------------------------------------- train


@command("train", f"train an FNet or Transformer model ({'/'.join(training.PROFILES)} profile)")
def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, choices=("fnet", "transformer"), help="encoder kind"
    )
    parser.add_argument(
        "--profile", default="quick", choices=tuple(training.PROFILES), help="size (default quick)"
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, history)")
    parser.add_argument("--epochs", type=int, help="epochs to run now (default: the profile's)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--data", type=Path, help="prepared folder (default: the profile's)")
    parser.add_argument(
        "--checkpoint-steps", type=int, metavar="N",
        help="also save a step checkpoint every N optimizer steps, for resuming inside an "
        "epoch (default: the profile's; 0: only at epoch ends)",
    )
    parser.add_argument("--loss-check", action="store_true", help="on CPU cores, allow "
                        "bfloat16 only after a short run shows it keeps the validation loss")
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> None:
    if args.checkpoint_steps is not None and args.checkpoint_steps < 0:
        raise PianoaccError(f"--checkpoint-steps: expected 0 or more, got {args.checkpoint_steps}")
    history = training.train(
        args.profile, args.model, args.out, epochs=args.epochs, resume=args.resume,
        data=args.data, checkpoint_steps=args.checkpoint_steps, loss_check=args.loss_check,
    )
    last = {key: values[-1] for key, values in history.items() if values}
    summary = ", ".join(f"{key} {last[key]:.4g}" for key in ("loss", "val_loss") if key in last)
    print(f"trained {args.model} ({args.profile}) through epoch {last.get('epoch')}: {summary}")
    written = ("best.keras", "last.keras", "step.keras", "history.csv", "config.json",
               "training_state.json", "logs")
    for name in written:
        if (args.out / name).exists():
            print(f"  {args.out / name}")


# --------------------------------------------------------------------------- accompany


@command("accompany", "melody MIDI -> melody + generated PIANO accompaniment MIDI")
def _accompany_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("melody", type=Path, help="melody MIDI file (any meter and tempo map)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="arrangement MIDI to write")
    parser.add_argument(
        "--checkpoint", default="fnet",
        help="fnet or transformer (the shipped models), fnet-l (the shipped 6.9M-parameter "
        "FNet: slower, a little less often told from the pianist on validation), a .keras file "
        "or a training folder (default fnet)",
    )
    parser.add_argument(
        "--temperature", type=float, default=DEFAULT_TEMPERATURE,
        help=f"0: greedy (default {DEFAULT_TEMPERATURE})",
    )
    velocity_temperature_argument(parser)
    kind_temperature_arguments(parser)
    note_off_bias_argument(parser)
    parser.add_argument("--top-k", type=int, help="sample among the k likeliest tokens")
    parser.add_argument(
        "--top-p", type=float, default=DEFAULT_TOP_P,
        help=f"nucleus sampling mass (default {DEFAULT_TOP_P}; 1: off)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--track", help="melody track name or index (default: MELODY, else the only or "
        "highest melodic track)",
    )
    parser.add_argument(
        "--chords", default="auto", metavar="FILE|auto|none",
        help="the chords to play: a text file of 'start end label' lines (seconds; columns "
        "separated by spaces or tabs; POP909 labels such as C:maj, F#:min7, Bb:7/3, "
        "C:maj/#4, G:7(#9), read with their sharps and flats; a '#' at the start of a line "
        "or after a space or tab starts a comment; chords starting at or after the "
        "melody's end are dropped and chords running past it cut there, with a notice), "
        "auto (default: chosen for the melody by the harmoniser learned from POP909) or none",
    )
    harmony_rule_arguments(parser)
    candidates_argument(parser)
    overlap_argument(parser)
    compound_argument(parser)
    parser.add_argument("--wav", type=Path, help="also render the arrangement to this WAV file")
    parser.add_argument("--timings", action="store_true", help="print phase times (JSON, stderr)")
    parser.set_defaults(func=_accompany)


def accompany_sampling(args: argparse.Namespace) -> SamplingConfig:
    """The sampling settings of ``pianoacc accompany``'s parsed options."""
    return SamplingConfig(
        args.temperature, args.top_k, args.top_p, args.seed, args.chord_mask,
        args.velocity_temperature, args.note_off_bias, args.shift_temperature,
        args.pitch_temperature,
    )


def _accompany(args: argparse.Namespace) -> None:
    clock = Stopwatch(STARTED, "start_up")  # the imports ended when this command began
    chord_file = None if args.chords in ("auto", "none") else Path(args.chords)
    check_outputs(
        {"-o": args.out, "--wav": args.wav}, {"input melody": args.melody, "chord file": chord_file}
    )
    melody = load_melody(args.melody, args.track)
    signatures = [f"{s.numerator}/{s.denominator}" for s in melody.midi.time_signature_changes]
    meter = " -> ".join(name for name, _ in itertools.groupby(signatures)) or "4/4 (assumed)"
    tempi = melody.midi.get_tempo_changes()[1]
    tempo = f"{min(tempi):.4g}" + (f"-{max(tempi):.4g}" if max(tempi) > min(tempi) else "")
    print(f"melody: {args.melody}: {melody.description}; meter {meter}, {tempo} bpm")

    compound = sum(1 for unit in bar_units(melody) if unit)
    if compound:
        how = "through the swing map" if args.compound == "swing" else "as they are (--compound plain)"
        print(f"compound meter: {compound} of {melody.num_bars} bars accompanied {how}")

    if args.chords == "auto":
        chords = learned_chords(melody.notes, melody.grid.bar_starts, melody.end_step)
        print(f"chords: {len(chords)} estimated from the melody")
    elif args.chords == "none":
        chords = []
        print("chords: none (the model hears the melody only)")
    else:
        annotation = read_chord_file(args.chords, melody.grid, melody.end_step)
        chords = annotation.spans
        if annotation.notice():
            print(annotation.notice())  # chords past the melody's end: dropped or cut
        share = chord_coverage(chords, melody.end_step)
        print(f"chords: {len(chords)} from {args.chords}, covering {share:.0%} of the melody")

    sampling = accompany_sampling(args)
    clock.lap("melody")
    model, window = load_checkpoint(args.checkpoint)
    window = window.with_overlap(args.overlap_bars)
    clock.lap("model")
    print(
        f"model: {resolve_checkpoint(args.checkpoint)} ({model.config.kind}; windows of "
        f"{window.bars} bars, {window.overlap_bars} overlapping)"
    )
    decoder = generation.CachedDecoder(model, sampling)
    (notes,) = accompany_melodies(
        model, [melody], sampling, window, chords=[chords], release=args.release,
        hanging_beats=args.hanging_beats, compound=args.compound, decoder=decoder,
        candidates=args.candidates,
        reranker=generation.candidate_reranker(args.checkpoint, args.candidates),
    )
    generated = clock.lap_decoding(decoder.timings)["wall"]
    write_arrangement(melody, notes, args.out)
    clock.lap("writing")
    print(
        f"wrote {args.out}: melody + PIANO ({len(notes)} notes over {melody.num_bars} bars); "
        f"generated in {generated:.1f} s, {time.perf_counter() - STARTED:.1f} s in all"
    )
    if args.timings:
        print(f"timings: {clock.json()}", file=sys.stderr)
    if args.wav:
        rendering = render_wav(args.out, args.wav)
        print(f"wrote {rendering.path} ({rendering.seconds:.1f} s of audio, {rendering.renderer})")


@command("prebuild", "make the decoding programs of a first 'pianoacc accompany' ahead of it "
         "(JAX; 'make setup' runs it)")
def _prebuild_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", default="fnet", help="the model to prepare for (default fnet, the "
        "command's default)",
    )
    parser.set_defaults(func=_prebuild)


def _prebuild(args: argparse.Namespace) -> None:
    backend = keras.config.backend()
    if backend != "jax":
        print(f"prebuild: nothing to keep under {backend} (programs are kept under JAX only)")
        return
    # The programs of the command's own defaults: its options parsed with none given.
    defaults = build_parser().parse_args(["accompany", "melody.mid", "-o", "out.mid"])
    model, window = load_checkpoint(args.checkpoint)
    decoder = generation.CachedDecoder(model, accompany_sampling(defaults))
    made = prebuild_programs(model, decoder, window, defaults.candidates)
    print(f"prebuild: {resolve_checkpoint(args.checkpoint)}: decoding programs for "
          f"{made['widths']} melody widths ({made['programs']} made or loaded, "
          f"{made['seconds']:.0f} s), kept in {cache_dir()}")


# --------------------------------------------------------------------------- evaluate

from pianoacc_utils.cli import evaluate as evaluate_command  # noqa: E402  (registers it)

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
    if argv is None and args.command == "accompany":  # the command: files are closed, so
        sys.stdout.flush()  # skip the teardown of Keras and JAX (seconds of the user's wait)
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
