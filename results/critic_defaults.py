"""Do the settings the critic prefers keep the timing and the harmony? Validation split.

    KERAS_BACKEND=jax .venv/bin/python results/critic_defaults.py [--segments 32]

``results/critic_levers.py`` measured, on whole validation songs, how well the critic
tells FNet's accompaniment from the pianist's under each generation setting. A setting the
critic finds harder to tell apart replaces the defaults only if it keeps what the earlier
defaults were chosen for (``results/sampling_validation.md``, ``velocity_validation.md``,
``chord_mask_validation.md``, ``defaults_validation.md``): this script runs the quality bar
(``evaluation.quality_bar``, thresholds from the validation pianist) on the same
``--segments`` 32-bar validation segments, chords from the melody alone, seed 0, for the
earlier defaults and the :data:`CANDIDATE_COUNT` levers the critic found hardest to
tell from the pianist. It then chooses, among the
candidates that pass at least as many checks as the earlier defaults less
:data:`CHECK_SLACK`, the one the critic found hardest to tell from the pianist (the
earlier defaults when none qualifies).

Writes results/critic_defaults.json and .md. Each run is ``defaults_validation.run``
(the model shipped as ``pretrained/fnet``, its report cached by its settings under
``cache_dir()/defaults_validation``), so an interrupted run resumes and a setting both
scripts try is run once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from critic_validation import LEGACY_OVERLAP
from defaults_validation import CHECKPOINT, SHOWN, run

from pianoacc_utils import evaluation
from pianoacc_utils.common import write_atomic, write_json
from pianoacc_utils.evaluation.critic import accuracy_cell

DECIDES_ON = "validation"
"""The split this script chooses on (the generation defaults), ``None`` where it chooses
nothing; ``tests/test_project.py`` checks that no script chooses on the test split."""

OUT = Path("results/critic_defaults")
LEVERS = Path("results/critic_levers.json")
EARLIER = "the earlier defaults"
CANDIDATE_COUNT = 3
"""How many levers of ``results/critic_levers.json`` are tried against :data:`EARLIER`:
the ones the critic found hardest to tell from the pianist."""
CHECK_SLACK = 1
"""Checks fewer than the earlier defaults that a candidate may pass: one check is within
what another draw of notes moves on 32 segments (``results/defaults_validation.md``,
``CHANGE_MARGIN``)."""
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=32)
    args = parser.parse_args()
    started = time.time()
    levers = json.loads(LEVERS.read_text())
    base = evaluation.EvaluationConfig(
        split="validation", segments=args.segments, chords="estimated", copy_check=False,
        critic=False, candidates=1,  # before reranking (results/critic_rerank.py)
        overlap_bars=LEGACY_OVERLAP,  # and before results/critic_overlap.py
    )
    rows = []
    ranked = sorted(
        (name for name in levers["systems"] if name in levers["settings"]["levers"]),
        key=lambda name: levers["systems"][name]["accuracy"],
    )
    candidates = [name for name in ranked if name != EARLIER][:CANDIDATE_COUNT]
    for name in (EARLIER, *candidates):
        settings = {**levers["settings"]["earlier"], **levers["settings"]["levers"][name]}
        report = run(replace(base, **settings))
        bar = report["quality_bar"]["fnet"]
        summary = report["seeds"]["median"]
        critic = levers["systems"][name]
        rows.append({
            "name": name, "settings": settings,
            "passed": sum(row["passed"] for row in bar), "checks": len(bar),
            "failed": [row["criterion"] for row in bar if not row["passed"]],
            "critic": {k: critic[k] for k in ("accuracy", "accuracy_lo", "accuracy_hi")},
            "fnet": {m: summary["fnet"][m] for m in SHOWN},
            "pianist": {m: summary["ground_truth"][m] for m in SHOWN},
        })
        print(f"[{time.time() - started:6.0f} s] {name}: {rows[-1]['passed']}/{len(bar)} checks",
              flush=True)
    earlier = rows[0]
    qualified = [r for r in rows[1:] if r["passed"] >= earlier["passed"] - CHECK_SLACK]
    qualified = [r for r in qualified if r["critic"]["accuracy"] < earlier["critic"]["accuracy"]]
    chosen = min(qualified, key=lambda r: r["critic"]["accuracy"], default=earlier)
    command = f"KERAS_BACKEND=jax .venv/bin/python results/critic_defaults.py --segments {args.segments}"
    report = {
        "command": command, "checkpoint": CHECKPOINT, "split": "validation",
        "segments": args.segments, "chords": "estimated", "check_slack": CHECK_SLACK,
        "rows": rows, "chosen": chosen["name"], "chosen_settings": chosen["settings"],
    }
    write_json(OUT.with_suffix(".json"), report)
    lines = [
        "# The defaults the critic chose, checked against the quality bar (validation split)",
        "",
        f"Written by `{command}` (with `{OUT}.json`). The model shipped as `pretrained/fnet`, "
        f"{args.segments} validation segments of 32 bars, chords from the melody alone, "
        "sampling seed 0. *Critic*: accuracy of the critic telling FNet from the pianist on 20 "
        "whole validation songs, from the melody alone (`results/critic_levers.md`; 0.5 = "
        "indistinguishable). The setting chosen is the one the critic finds hardest to tell "
        f"from the pianist among those passing at least {CHECK_SLACK} check fewer than the "
        "earlier defaults (one check is within what another seed moves). Metrics: medians "
        "over segments (key agreement: mean), the pianist's in the last row.",
        "",
        "| setting | critic [95% CI] | checks passed | " + " | ".join(SHOWN) + " |",
        "|---|---|---|" + "---|" * len(SHOWN),
    ]
    for row in rows:
        mark = " **chosen**" if row is chosen else ""
        critic = accuracy_cell(row["critic"])
        values = " | ".join(f"{row['fnet'][m]:.3g}" for m in SHOWN)
        lines.append(f"| {row['name']}{mark} | {critic} | {row['passed']}/{row['checks']} | {values} |")
    pianist = " | ".join(f"{rows[0]['pianist'][m]:.3g}" for m in SHOWN)
    lines += [f"| pianist | | | {pianist} |", ""]
    for row in rows:
        if row["failed"]:
            lines.append(f"- *{row['name']}* fails: " + "; ".join(row["failed"]) + ".")
    write_atomic(OUT.with_suffix(".md"), ("\n".join(lines) + "\n").encode())
    print(f"written {OUT}.json, .md in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
