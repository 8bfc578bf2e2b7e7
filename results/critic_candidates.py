"""How many candidates the reranker chooses among, at today's defaults, measured with the
critic on validation songs.

    KERAS_BACKEND=jax .venv/bin/python results/critic_candidates.py [--songs N]
    .venv/bin/python results/critic_candidates.py --report

Eight candidates per window were chosen among 1, 2, 4, 8 and 16 on the first 20 validation
songs, from the melody alone (``results/critic_rerank.md``): 8 and 16 both gave 0.59 there,
while with a lead sheet 16 gave 0.60 against 0.64. That choice came before the windows'
overlap and the velocity temperature were chosen, and it read one chord setting where the
project's targets name two. This script asks again at today's defaults, on the first
:data:`SONGS` validation songs, from the melody alone and with the annotated chords.

FNet samples :data:`POOL` candidates for every window (windows primed by 6 bars, seed 0),
and every candidate is kept with the reranker's score (``critic_choice.CandidateLog``).
Keeping the best of the first ``k`` of a window's candidates, for each ``k`` of
:data:`COUNTS`, rebuilds every song as ``k`` candidates would have made it: a window's
candidates are sampled independently of one another, so the first ``k`` are ``k``
candidates. What differs is only what primed each window, the choice among all
:data:`POOL` before it, which the comparison shares (a paired comparison: it measures the
choice within a window, not what a better choice primes next). Keeping the best of all
:data:`POOL` gives back exactly what was generated (checked). Then the critic, all three
classifiers, tells each rebuild from the pianist.

The rule, fixed before the run: a count other than :data:`TODAY` replaces it only if it
lowers the mean of the two accuracies (melody only, lead sheet) by more than
:data:`MARGIN` and raises neither by more than :data:`MARGIN`; among those, the fewest
whose mean is within :data:`MARGIN` of the lowest (candidates cost time). Writes
``results/critic_candidates.json`` and ``.md``; test outputs play no part.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from critic_choice import assemble, candidates
from critic_validation import (
    accuracy_drops, critic_in_tensorflow, critic_on_songs, log, songs_or_report, whole_songs, write_report,
)

from pianoacc_utils.data.notes import Note
from pianoacc_utils.data.pop909 import Segment
from pianoacc_utils.defaults import DEFAULT_CANDIDATES, MAX_CANDIDATES
from pianoacc_utils.evaluation import critic
from pianoacc_utils.generation import rerank

DECIDES_ON = "validation"
"""The split this script chooses on (how many candidates per window);
``tests/test_project.py`` checks that no script chooses on the test split."""

OUT = Path("results/critic_candidates")
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_candidates.py"
SONGS = 40
"""Validation songs: 40, as ``results/critic_velocity.py`` (the first 20 flatter FNet)."""
CHORDS = {"melody only": "estimated", "lead sheet": "annotated"}
TODAY = DEFAULT_CANDIDATES
POOL = MAX_CANDIDATES
COUNTS = (8, 12, 16)
MARGIN = 0.01


def rebuild(songs: list[Segment], made: dict[str, dict], count: int) -> list[list[Note]]:
    """Every song made again keeping, in each window, the best of its first ``count``
    candidates."""
    def pick(options: list[dict]) -> int:
        return rerank.choose([o["score"] for o in options[:count]])

    return [assemble(made[seg.song_id]["windows"], pick) for seg in songs]


def name(count: int, chords: str) -> str:
    return f"{chords}, best of {count}"


def systems(songs: list[Segment]) -> dict[str, list[list[Note]]]:
    """Each count's rebuild of every song, both chord settings; all of :data:`POOL` checked
    against what was generated."""
    made = {}
    for chords, source in CHORDS.items():
        found = candidates(songs, source, {"candidates": POOL})
        for count in COUNTS:
            made[name(count, chords)] = rebuild(songs, found, count)
        generated = [[Note(*n) for n in found[s.song_id]["generated"]] for s in songs]
        if made[name(POOL, chords)] != generated:
            raise SystemExit(f"{chords}: keeping the best of all {POOL} did not give back "
                             "what was generated; the candidate log is wrong")
        log(f"{chords}: {len(COUNTS)} counts rebuilt")
    return made


def choice(report: dict) -> tuple[int, dict]:
    """The count the rule of this script keeps, and each count's drop in accuracy against
    :data:`TODAY` per chord setting."""
    others = [k for k in COUNTS if k != TODAY]
    drops = accuracy_drops(report["systems"], name, TODAY, others, CHORDS)
    mean = {k: float(np.mean(list(d.values()))) for k, d in drops.items()}
    kept = [k for k, d in drops.items()
            if mean[k] > MARGIN and all(v >= -MARGIN for v in d.values())]
    if not kept:
        return TODAY, drops
    best = max(mean[k] for k in kept)
    return min(k for k in kept if mean[k] >= best - MARGIN), drops


def markdown(report: dict) -> str:
    critic_report = report["critic_report"]
    settings = critic_report["settings"]
    rows = critic_report["systems"]
    lines = [
        "# How many candidates the reranker chooses among, on validation",
        "",
        f"Written by `{COMMAND}` ({critic_report['seconds']:.0f} s for the critic); "
        f"`.venv/bin/python results/critic_candidates.py --report` rewrites it from "
        f"`{OUT}.json`. FNet on the first {len(settings['songs'])} whole validation songs "
        f"({settings['bars']} bars) at today's defaults but for the candidates (windows "
        f"primed by 6 bars, sampling seed 0), from the melody alone and with the annotated "
        f"chords. {POOL} candidates were sampled for every window and each kept with the "
        "reranker's score; *best of k* keeps, in each window, the best of its first k (a "
        f"paired comparison: every count's windows were primed by the choice among all {POOL} "
        f"before them). The best of all {POOL} gives back exactly what was generated. "
        "Accuracy of the best of the critic's three classifiers on held-out songs (0.5 = "
        "indistinguishable; 95% interval from resampling songs). Rule, fixed before the run: "
        f"a count replaces {TODAY} only if it lowers the mean of the two accuracies by more "
        f"than {MARGIN} and raises neither by more than {MARGIN}; among those the fewest "
        f"within {MARGIN} of the lowest mean.",
        "",
        "| candidates | critic, melody only | critic, lead sheet | change, melody only | "
        "change, lead sheet |",
        "|---|---|---|---|---|",
    ]
    for count in COUNTS:
        cells = [critic.accuracy_cell(rows[name(count, c)]) for c in CHORDS]
        drops = report["drops"].get(str(count))
        changes = [f"{-drops[c]:+.3f}" for c in CHORDS] if drops else ["", ""]
        label = f"{count}" + (" (today's)" if count == TODAY else "")
        lines.append(f"| {label} | {' | '.join(cells)} | {' | '.join(changes)} |")
    verdict = (f"**Kept: {TODAY} candidates.** No other count meets the rule."
               if report["choice"] == TODAY else f"**Chosen: {report['choice']} candidates.**")
    lines += ["", verdict, "",
              "The critic's full report (controls and what gives each rebuild away) follows.",
              "", critic.critic_markdown(critic_report)]
    return "\n".join(lines) + "\n"


def main() -> None:
    count = songs_or_report(__doc__, OUT, markdown, SONGS)
    if count is None:
        return
    songs = whole_songs(count)
    made = systems(songs)
    critic_in_tensorflow(__file__, count)
    critic_report = critic_on_songs(songs, made, command=COMMAND)
    kept, drops = choice(critic_report)
    report = {"critic_report": critic_report, "choice": kept,
              "drops": {str(k): d for k, d in drops.items()}}
    log(f"kept: {kept}")
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
