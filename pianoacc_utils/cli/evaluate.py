"""``pianoacc evaluate``: the models, the block-chord baseline and the pianist on a split's
segments, judged against the validation split's pianist."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pianoacc_utils.cli.options import (
    command,
    compound_argument,
    harmony_rule_arguments,
    candidates_argument,
    overlap_argument,
    note_off_bias_argument,
    kind_temperature_arguments,
    velocity_temperature_argument,
)
from pianoacc_utils.common import PianoaccError, check_outputs, write_atomic, write_json
from pianoacc_utils.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, REBAR_METERS
from pianoacc_utils.evaluation import (
    EvaluationConfig,
    evaluation_report,
    melodies_markdown,
    report_markdown,
)


@command(
    "evaluate",
    "compare models, the block-chord baseline and the pianist on a split (default test); "
    "the quality bar's thresholds come from the validation split's pianist",
)
def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="PATH",
        help="a .keras file, a training folder, or a shipped model (fnet, transformer, fnet-l); "
        "repeatable",
    )
    parser.add_argument("--segments", type=int, help="evaluate N segments spread over the split")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--bars", type=int, default=32, help="bars per evaluated segment")
    parser.add_argument("--primer-tokens", type=int, default=0, help="ground-truth tokens to prime with")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    velocity_temperature_argument(parser)
    kind_temperature_arguments(parser)
    note_off_bias_argument(parser)
    candidates_argument(parser)
    overlap_argument(parser)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float, default=DEFAULT_TOP_P)
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    seeds.add_argument(
        "--seeds", type=int, nargs="+", metavar="SEED",
        help="evaluate every checkpoint at each of these seeds; the report gives each "
        "metric's median over seeds and its spread, and the quality bar per seed",
    )
    parser.add_argument(
        "--copy-check", action=argparse.BooleanOptionalAction, default=True,
        help="look every system's 2- and 4-bar windows up in the train split (default on; "
        "the index is built once, then cached)",
    )
    parser.add_argument(
        "--critic", action=argparse.BooleanOptionalAction, default=True,
        help="train classifiers to tell each system from the pianist in 2-bar windows "
        "(default on; at the first seed)",
    )
    parser.add_argument(
        "--chords", default="annotated", choices=("annotated", "estimated", "none"),
        help="chords the models play to: the annotation (default), estimated from the "
        "melody, or none",
    )
    harmony_rule_arguments(parser)
    compound_argument(parser)
    parser.add_argument(
        "--meter", default="4/4", choices=REBAR_METERS,
        help="re-bar the segments' four-beat bars: 3/4 cuts each one's last beat, 2/4 "
        "splits it in two (default 4/4: as they are)",
    )
    parser.add_argument("--json", type=Path, help="write the full results here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    parser.add_argument(
        "--melodies", type=Path, metavar="DIR",
        help="also accompany every *.mid melody in DIR with each checkpoint (no ground truth)",
    )
    parser.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> None:
    check_outputs(
        {"--json": args.json, "--markdown": args.markdown},
        {f"checkpoint {c}": Path(c) for c in args.checkpoint if Path(c).is_file()},
    )
    config = EvaluationConfig(
        split=args.split,
        bars_per_segment=args.bars,
        segments=args.segments,
        primer_tokens=args.primer_tokens,
        temperature=args.temperature,
        velocity_temperature=args.velocity_temperature,
        shift_temperature=args.shift_temperature,
        pitch_temperature=args.pitch_temperature,
        note_off_bias=args.note_off_bias,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seeds[0] if args.seeds else args.seed,
        chords=args.chords,
        chord_mask=args.chord_mask,
        release=args.release,
        hanging_beats=args.hanging_beats,
        candidates=args.candidates,
        overlap_bars=args.overlap_bars,
        compound=args.compound,
        meter=args.meter,
        seeds=tuple(args.seeds or ()),
        copy_check=args.copy_check,
        critic=args.critic,
    )
    melody_paths = []
    if args.melodies is not None:
        if not args.melodies.is_dir():
            raise PianoaccError(f"{args.melodies}: not a folder of melody MIDI files")
        melody_paths = sorted(args.melodies.glob("*.mid"))
        if not melody_paths:
            raise PianoaccError(f"{args.melodies}: no *.mid files in this folder")
        if not args.checkpoint:
            raise PianoaccError("--melodies needs at least one --checkpoint to accompany them")
    report = evaluation_report(args.checkpoint, config, melody_paths, progress=sys.stderr.isatty())
    details = report["details"]
    table = report_markdown(report)
    rebarred = "" if args.meter == "4/4" else f", re-barred into {args.meter}"
    print(f"{details['segments']} segments of {args.bars} bars from the {args.split} split{rebarred}\n")
    print(table)
    for name, info in details["models"].items():
        tf = info["teacher_forced"]
        print(
            f"\n{name}: teacher-forced loss {tf['loss']:.3f}, perplexity {tf['perplexity']:.2f}, "
            f"token accuracy {tf['accuracy']:.3f}; generation {info['generation_seconds']} s"
        )
    for name, rows in report["seeds"]["quality_bar"].items():
        passed = ", ".join(f"{row['passed']}/{row['checks']} (seed {row['seed']})" for row in rows)
        print(f"{name}: quality bar {passed} checks passed")
    if "seconds" in details.get("critic", {}):
        print(f"critic: {details['critic']['seconds']} s")
    if "melodies" in report:
        print(f"\n{len(melody_paths)} melodies from {args.melodies} (no ground truth)\n")
        print(melodies_markdown(report["melodies"]))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.markdown:
        write_atomic(args.markdown, (table + "\n").encode())
        print(f"wrote {args.markdown}")
