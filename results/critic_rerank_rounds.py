"""Does a second round of the reranker bring the accompaniment closer to the pianist's?
Measured with the critic on validation songs.

    KERAS_BACKEND=jax .venv/bin/python results/critic_rerank_rounds.py [--songs N]

The reranker (``results/reranker.py``) learned to tell the pianist from the models'
accompaniment at one candidate per window. Reranking at the default number of candidates
moves that accompaniment, and what still gives it away changes with it: a second round
(``results/reranker.py --base FIRST``) also learns from the accompaniment that the first
round chose. This script compares the two at the default settings on the same whole
*validation* songs as ``results/critic_validation.py`` (its cache is shared):

* the critic (best of its three classifiers) telling the pianist from FNet and from the
  Transformer, from the melody alone and with the annotated chords, with each round
  choosing among the candidates;
* the quality bar (thresholds from the validation pianist) on the 32 validation segments
  of ``results/critic_rerank.py``, FNet from the melody alone, seed 0, counting the checks
  that the pianist of the same segments passes.

The rule, fixed before the second round was measured: the second round replaces the
first if, from the melody alone, the critic's accuracy averaged over the two models is
at least :data:`GAIN` lower; with a lead sheet it is no more than :data:`EQUAL_WITHIN`
higher; and FNet passes at least as many checks less :data:`CHECK_SLACK`. Writes
``results/critic_rerank_rounds.json`` and ``.md``. Only validation songs are used: the
reranker chosen here is then reported on test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from critic_defaults import CHECK_SLACK
from critic_rerank import SEGMENTS
from critic_rerank import quality_bar as rerank_quality_bar
from critic_validation import (
    LEGACY_OVERLAP,
    SEED,
    SYSTEMS,
    accompany_songs,
    critic_in_tensorflow,
    critic_on_songs,
    log,
    reranker_digest,
    whole_songs,
    write_report,
)
from defaults_validation import SHOWN

from pianoacc_utils.common import cache_dir
from pianoacc_utils.defaults import DEFAULT_CANDIDATES
from pianoacc_utils.evaluation import critic
from pianoacc_utils.generation import RERANKER_FILE, pretrained_dir

DECIDES_ON = "validation"
"""The split this script chooses on (which reranker ships); ``tests/test_project.py``
checks that no script chooses on the test split."""
OUT = Path("results/critic_rerank_rounds")
SONGS = 20
GAIN = 0.02
"""How much lower the melody-only critic accuracy must be for the second round to ship."""
EQUAL_WITHIN = 0.01
"""How much higher the lead-sheet critic accuracy may be and still count as no worse."""
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_rerank_rounds.py"


def rounds() -> dict[str, Path]:
    """Round name -> the reranker's file: the first round as shipped, the second as
    ``results/reranker.py --base`` wrote it into the cache folder."""
    return {
        "first round": pretrained_dir() / RERANKER_FILE,
        "second round": cache_dir() / "reranker" / "round2.npz",
    }


def quality_bar(reranker: Path) -> dict:
    """Checks passed by FNet at the default candidates, chosen by ``reranker``, on the
    validation segments of ``critic_rerank.quality_bar`` (the shipped reranker as ``None``,
    so that its cached run is found)."""
    shipped = reranker.resolve() == rounds()["first round"].resolve()
    return rerank_quality_bar(DEFAULT_CANDIDATES, None if shipped else str(reranker))


def choose(report: dict) -> tuple[str, dict]:
    """The round that ships, and the means the rule compares (module docstring)."""
    means = {}
    for name in rounds():
        found = {kind: [report["systems"][f"{system}, {name}"]["accuracy"]
                        for system in SYSTEMS if system.endswith(kind)]
                 for kind in ("melody_only", "lead_sheet")}
        means[name] = {kind: sum(values) / len(values) for kind, values in found.items()}
    first, second = means["first round"], means["second round"]
    bars = report["quality_bar"]
    better = (
        second["melody_only"] <= first["melody_only"] - GAIN
        and second["lead_sheet"] <= first["lead_sheet"] + EQUAL_WITHIN
        and bars["second round"]["passed"] >= bars["first round"]["passed"] - CHECK_SLACK
    )
    return ("second round" if better else "first round"), means


def markdown(report: dict) -> str:
    settings, bars, means = report["settings"], report["quality_bar"], report["means"]
    table = [
        "| reranker | critic, melody only (FNet, Transformer: mean) | critic, lead sheet "
        "(mean) | checks passed (of those the pianist passes) | "
        + " | ".join(SHOWN) + " |",
        "|---|---|---|---|" + "---|" * len(SHOWN),
    ]
    for name in rounds():
        mark = " **chosen**" if name == report["chosen"] else ""
        accuracy = {s: report["systems"][f"{s}, {name}"]["accuracy"] for s in SYSTEMS}
        melody = ", ".join(f"{v:.2f}" for s, v in accuracy.items() if s.endswith("melody_only"))
        lead = ", ".join(f"{v:.2f}" for s, v in accuracy.items() if s.endswith("lead_sheet"))
        values = " | ".join(f"{bars[name]['fnet'][m]:.3g}" for m in SHOWN)
        table.append(
            f"| {name}{mark} | {melody}: {means[name]['melody_only']:.3f} | {lead}: "
            f"{means[name]['lead_sheet']:.3f} | {bars[name]['passed']}/{bars[name]['checks']} "
            f"| {values} |"
        )
    pianist = " | ".join(f"{bars['first round']['pianist'][m]:.3g}" for m in SHOWN)
    table.append(f"| pianist | | | | {pianist} |")
    failed = [f"- *{name}* fails: " + "; ".join(bars[name]["failed"]) + "."
              for name in rounds() if bars[name]["failed"]]
    return "\n".join([
        "# A second round of the reranker, on validation",
        "",
        f"Written by `{COMMAND}` (with `results/critic_rerank_rounds.json`).",
        "",
        f"**Chosen: the {report['chosen']}.** The rule, fixed beforehand: the second round "
        f"ships if from the melody alone the critic's accuracy, averaged over FNet and the "
        f"Transformer, is at least {GAIN} lower than the first round's; with a lead sheet "
        f"no more than {EQUAL_WITHIN} higher; and FNet fails no more than "
        f"{CHECK_SLACK} check more on the quality bar ({settings['segments']} validation "
        "segments of 32 bars, chords from the melody alone, seed 0; counting only the checks "
        "the pianist of the same segments passes). The first round learned from the models at "
        "one candidate per window (`results/reranker.md`); the second also from their "
        "accompaniment at the default number of candidates, chosen by the first "
        f"(`{settings['second_round_report']}`).",
        "",
        *table,
        "",
        *failed,
        "",
        "## The critic, in full",
        "",
        f"{report['seconds']:.0f} s for the critic. FNet and the Transformer on "
        f"{len(settings['songs'])} whole validation songs ({settings['bars']} bars), from the "
        "melody alone (chords from the learned harmoniser) and with the annotated chords, at "
        "the default settings (sampling seed 0), each round of the reranker choosing among "
        "the candidates. Accuracy of the best of the critic's three classifiers on held-out "
        "songs (0.5 = indistinguishable; 95% interval from resampling songs).",
        "",
        critic.critic_markdown(report),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    args = parser.parse_args()
    files = rounds()
    if not files["second round"].is_file():
        raise SystemExit(f"{files['second round']}: no second round there; write it with "
                         "results/reranker.py --base pretrained/reranker/reranker.npz --out "
                         f"{files['second round']}")
    songs = whole_songs(args.songs)
    notes = {
        f"{system}, {name}": accompany_songs(songs, "validation", system, checkpoint, chords,
                                             {"overlap_bars": LEGACY_OVERLAP}, reranker=path)
        for name, path in files.items() for system, (checkpoint, chords) in SYSTEMS.items()
    }
    bars = {}
    for name, path in files.items():
        bars[name] = quality_bar(path)
        log(f"{name}: {bars[name]['passed']}/{bars[name]['checks']} checks the pianist passes")
    critic_in_tensorflow(__file__, args.songs)
    report = critic_on_songs(
        songs, notes, command=COMMAND, segments=SEGMENTS, check_slack=CHECK_SLACK,
        gain=GAIN, equal_within=EQUAL_WITHIN, sampling_seed=SEED,
        rerankers={name: reranker_digest(path) for name, path in files.items()},
        second_round_report="results/reranker_round2.md",
    )
    report["quality_bar"] = bars
    report["chosen"], report["means"] = choose(report)
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
