"""How many new bars each window adds, against the critic, on validation.

    KERAS_BACKEND=jax .venv/bin/python results/critic_overlap.py [--songs N]

A long melody is accompanied window by window (``generation.WindowConfig``): each window
of the shipped models reads 8 bars, of which the first ``overlap_bars`` (2) are the
accompaniment already made (the decoder's primer), so that it adds 6 new bars. With
reranking, the reranker keeps one of the window's candidates by the mean of its 2-bar
windows (``generation.rerank.candidate_score``): one choice per 6 bars. With a larger
overlap each window adds fewer bars and the reranker chooses more often, at a finer
grain (with 6 bars of overlap, once per 2-bar window, the unit the critic hears), while
each bar is still sampled once, in more windows (each window's primer run through the
decoder again, so decoding takes longer: ``benchmarks/accompany_wait.py``); each window
also reads more of what came before it. Where the overlap bars need more than
half the decoder's tokens, the window starts at a later bar line
(``generation.accompany.next_window``).

FNet at today's defaults (8 candidates per window) on the 20 whole *validation* songs of
``results/critic_validation.py`` (the cache is shared), from the melody alone and with
the annotated chords, with 2 (the default before this choice), 4 and 6 bars of overlap. Then the
critic, all three of its classifiers (the reranker shares the feature critics'
features, so the convolutional one, which reads piano rolls, must be among them), tells
each from the pianist.

The rule, fixed before the results: an overlap replaces the 2 bars of the defaults before only if it lowers
the critic's accuracy by more than :data:`MARGIN` both from the melody alone and with a
lead sheet (as ``results/critic_temperatures.py``); among those, the one with the lowest
accuracy from the melody alone (within :data:`MARGIN` of it, the smaller overlap: fewer
windows to decode). The quality bar must then keep its checks (as
``results/critic_rerank.py``, on its 32 validation segments), and the wait is measured
again (``benchmarks/accompany_wait.py``). Writes ``results/critic_overlap.json`` and
``.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from critic_defaults import CHECK_SLACK
from critic_rerank import SEGMENTS, quality_bar
from critic_validation import (
    LEGACY_OVERLAP,
    critic_in_tensorflow,
    critic_on_songs,
    generate_timed,
    log,
    whole_songs,
    write_report,
)
from defaults_validation import SHOWN

from pianoacc_utils.defaults import DEFAULT_CANDIDATES
from pianoacc_utils.evaluation import critic

DECIDES_ON = "validation"
"""The split this script chooses on; ``tests/test_project.py`` checks that no script
chooses on the test split."""

OUT = Path("results/critic_overlap")
SONGS = 20
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_overlap.py"
OVERLAPS = (2, 4, 6)
"""Bars of each 8-bar window that prime it (2: the default before this choice)."""
DEFAULT_OVERLAP = LEGACY_OVERLAP
"""The overlap of the defaults before this choice (2 bars)."""
MARGIN = 0.01
"""How much lower both accuracies must be for an overlap to replace the earlier one."""
CHORDS = {"melody only": "estimated", "lead sheet": "annotated"}


def name(chords: str, overlap: int) -> str:
    return f"{chords}, overlap {overlap}"


def changes(overlap: int) -> dict:
    """Changes to the default generation: the overlap."""
    return {"overlap_bars": overlap}


def systems(songs: list) -> tuple[dict[str, list], dict[str, float]]:
    """Every overlap's accompaniment, both chord settings, and the seconds each took to
    generate here (0 where it came from the cache)."""
    return generate_timed(songs, {name(chords, overlap): ("fnet", source, changes(overlap))
                                  for chords, source in CHORDS.items() for overlap in OVERLAPS})


def choose(report: dict, bars: dict[int, dict]) -> int:
    """The overlap chosen by the rule of the module docstring, among those that keep the
    quality bar's checks (``bars``: :func:`critic_rerank.quality_bar` per overlap)."""
    rows = report["systems"]
    accuracy = {(c, o): rows[name(c, o)]["accuracy"] for c in CHORDS for o in OVERLAPS}
    floor = bars[DEFAULT_OVERLAP]["passed"] - CHECK_SLACK
    better = [o for o in OVERLAPS if o != DEFAULT_OVERLAP and bars[o]["passed"] >= floor
              and all(accuracy[c, o] < accuracy[c, DEFAULT_OVERLAP] - MARGIN for c in CHORDS)]
    if not better:
        return DEFAULT_OVERLAP
    best = min(accuracy["melody only", o] for o in better)
    return min(o for o in better if accuracy["melody only", o] <= best + MARGIN)


def markdown(report: dict) -> str:
    settings, rows = report["settings"], report["systems"]
    bars = report["quality_bar"]
    table = ["| overlap (bars) | new bars per window | critic, melody only [95% CI] | "
             "critic, lead sheet [95% CI] | checks passed (of those the pianist passes) | "
             + " | ".join(SHOWN) + " |", "|---|---|---|---|---|" + "---|" * len(SHOWN)]
    for overlap in OVERLAPS:
        cells = [critic.accuracy_cell(rows[name(chords, overlap)]) for chords in CHORDS]
        bar = bars[str(overlap)]
        cells.append(f"{bar['passed']}/{bar['checks']}")
        cells += [f"{bar['fnet'][m]:.3g}" for m in SHOWN]
        mark = " **chosen**" if overlap == report["chosen"] else ""
        table.append(f"| {overlap}{mark} | {8 - overlap} | " + " | ".join(cells) + " |")
    pianist = " | ".join(f"{bars[str(DEFAULT_OVERLAP)]['pianist'][m]:.3g}" for m in SHOWN)
    table.append(f"| pianist | | | | | {pianist} |")
    return "\n".join([
        "# How many new bars each window adds, on validation",
        "",
        f"Written by `{COMMAND}` ({report['seconds']:.0f} s for the critic).",
        "",
        f"FNet on {len(settings['songs'])} whole validation songs ({settings['bars']} bars) "
        "at today's defaults (8 candidates per window, sampling seed 0), from the melody "
        "alone (chords from the learned harmoniser) and with the annotated chords, each "
        "8-bar window primed by the last 2, 4 or 6 bars already accompanied. Accuracy of the "
        "best of the critic's three classifiers on held-out songs (0.5 = "
        "indistinguishable; 95% interval from resampling songs).",
        "",
        f"**Chosen: {report['chosen']} bars of overlap.** Rule, fixed before the results: "
        f"an overlap replaces the {DEFAULT_OVERLAP} bars of the defaults before only if it lowers the accuracy "
        f"by more than {MARGIN} both from the melody alone and with a lead sheet; among "
        f"those the lowest from the melody alone (within {MARGIN}, the smaller overlap), "
        f"provided it fails at most {CHECK_SLACK} check more than {DEFAULT_OVERLAP} bars of "
        f"overlap on the quality bar ({SEGMENTS} validation segments of 32 bars, chords from the "
        "melody alone, seed 0; medians over segments, key agreement the mean), counting "
        "only the checks that the pianist of the same segments passes.",
        "",
        *table,
        "",
        "## The critic, in full",
        "",
        critic.critic_markdown(report),
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    args = parser.parse_args()
    songs = whole_songs(args.songs)
    notes, seconds = systems(songs)
    log("generation seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    bars = {overlap: quality_bar(DEFAULT_CANDIDATES, overlap=overlap) for overlap in OVERLAPS}
    for overlap, bar in bars.items():
        log(f"overlap {overlap}: {bar['passed']}/{bar['checks']} checks the pianist passes")
    critic_in_tensorflow(__file__, args.songs)
    report = critic_on_songs(songs, notes, learned=True, command=COMMAND,
                             overlaps=list(OVERLAPS), margin=MARGIN)
    report["quality_bar"] = {str(overlap): bar for overlap, bar in bars.items()}
    report["chosen"] = choose(report, bars)
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
