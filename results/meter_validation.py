"""How the models keep time in 3/4 and 2/4: POP909 validation segments re-barred.

    python results/meter_validation.py TAG FNET_CHECKPOINT TRANSFORMER_CHECKPOINT
    python results/meter_validation.py --table

The first form evaluates two checkpoints on 32 validation segments of 32 bars, as
they are (4/4) and re-barred into 3/4 and 2/4 (``pianoacc evaluate --meter``), with
default generation, and stores the summaries under TAG in
results/meter_validation.json (about 10 minutes on 2 CPU cores). The second writes
results/meter_validation.md from that file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pianoacc_utils import evaluation
from pianoacc_utils.common import write_atomic, write_json
from pianoacc_utils.defaults import REBAR_METERS

DECIDES_ON = "validation"
"""The split this script chooses on (nothing beyond validation: re-barred timing), ``None``
where it chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test
split."""

OUT = Path("results/meter_validation")
METRICS = (
    ("bars_off_share", "median"),
    ("bars_off_share", "mean"),
    ("melody_beat_coverage", "median"),
    ("grid_share", "median"),
    ("key_agreement", "mean"),
    ("notes_per_bar", "median"),
)
json_path = OUT.with_suffix(".json")
runs = json.loads(json_path.read_text()) if json_path.exists() else {}

if sys.argv[1:2] != ["--table"]:
    tag, fnet, transformer = sys.argv[1:4]
    for meter in REBAR_METERS:
        config = evaluation.EvaluationConfig(split="validation", segments=32, meter=meter)
        report = evaluation.evaluation_report([fnet, transformer], config)
        summary = report["summary"]["summary"]
        runs[f"{tag}/{meter}"] = {
            "checkpoints": [fnet, transformer],
            "metrics": {
                system: {f"{m} {stat}": summary[system][m][stat] for m, stat in METRICS}
                for system in ("ground_truth", "fnet", "transformer")
            },
            "quality_bar": {
                name: {"passed": sum(r["passed"] for r in rows), "failed": [
                    r["criterion"] for r in rows if not r["passed"]
                ]}
                for name, rows in report["quality_bar"].items()
            },
        }
        print(tag, meter, json.dumps(runs[f"{tag}/{meter}"]["quality_bar"]), flush=True)
        write_json(json_path, runs)
    sys.exit(0)

HEADER = """# Meters POP909 hardly has: validation segments re-barred into 3/4 and 2/4

32 segments of 32 bars from the validation split, as they are (4/4) and re-barred by
`data.rebar` (`pianoacc evaluate --split validation --segments 32 --meter M`): 3/4 cuts
the last beat out of every four-beat bar (melody, accompaniment, chords: the ground
truth too), 2/4 splits every four-beat bar in two. Default generation (temperature
0.7, top-p 0.8, velocity temperature 2.0, seed 0, annotated chords, chord mask and
release on). Medians over segments unless marked; `bars off` is the share of a
segment's bars whose best alignment is 1/8 beat or more off (the quality bar asks for
a median of at most 0.15). Written by `python results/meter_validation.py --table` from
`results/meter_validation.json`.

Models: *before*, the models shipped at commit `1970804` (trained on POP909 as it is,
with the meter signal); *re-barred*, the shipped models, trained the same way with a
fifth of the training segments re-barred into 3/4 and a fifth into 2/4
(`PrepareConfig.rebar_3_4`/`rebar_2_4`). The last column counts the quality-bar checks
passed; the ones that failed are listed in `results/meter_validation.json`. Most runs
fail "ending within one bar" here, a check that the models pass on the test split.

"""
tags = [tag for tag in ("before", "re-barred") if f"{tag}/4/4" in runs]
tags += sorted({key.split("/")[0] for key in runs} - set(tags))
lines = [
    (
        "| models | meter | system | bars off | bars off (mean) | melody beats covered | grid share "
        "| key agreement (mean) | notes per bar | quality bar |"
    ),
    "|---|---|---|---|---|---|---|---|---|---|",
]
for tag in tags:
    for meter in REBAR_METERS:
        run = runs[f"{tag}/{meter}"]
        for system in ("ground_truth", "fnet", "transformer"):
            values = run["metrics"][system]
            passed = run["quality_bar"].get(system, {}).get("passed")
            cells = " | ".join(f"{values[f'{m} {stat}']:.3g}" for m, stat in METRICS)
            lines.append(
                f"| {tag} | {meter} | {system} | {cells} | "
                f"{'' if passed is None else f'{passed}/12'} |"
            )
write_atomic(OUT.with_suffix(".md"), (HEADER + "\n".join(lines) + "\n").encode())
print("\n".join(lines))
