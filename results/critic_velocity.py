"""The velocity temperature at today's defaults, against the critic, on validation.

    KERAS_BACKEND=jax .venv/bin/python results/critic_velocity.py [--songs N]
    .venv/bin/python results/critic_velocity.py --report

The velocity temperature of 1.4 was chosen with one candidate per window on the first 20
validation songs (``results/critic_levers.md``), before reranking and before the windows'
overlap were chosen. On the first 40 validation songs at today's defaults the feature that
gives FNet away most is the spread of its velocities: a standard deviation of 13.4 within
a window against the pianist's 11.2 from the melody alone (AUC 0.64,
``results/augmentation_fnet_transposed_reranker_40_songs.md``). This script samples the
shipped FNet at today's defaults (eight candidates per window, reranked, windows primed by
6 bars, seed 0) with lower velocity temperatures (:data:`SETTINGS`), from the melody alone
and with the annotated chords, on the first :data:`SONGS` whole validation songs, and runs
the critic against the pianist.

The rule, fixed before the results: a setting replaces 1.4 only if it lowers the critic's
accuracy by more than :data:`MARGIN` both from the melody alone and with a lead sheet;
among those, the one with the lowest mean of the two; and then only if it passes at least
as many of the quality bar's checks as today's defaults less one (32 validation segments of
32 bars, chords from the melody alone, ``defaults_validation.run``). Writes
``results/critic_velocity.json`` and ``.md``; test outputs play no part.
"""

from __future__ import annotations

from pathlib import Path

from critic_validation import (
    accompany_songs, accuracy_drops, critic_in_tensorflow, critic_on_songs, log, songs_or_report, whole_songs,
    write_report,
)
from checkpoint_choice import checks_the_pianist_passes
from defaults_validation import run as quality_run

from pianoacc_utils import evaluation
from pianoacc_utils.evaluation import critic

DECIDES_ON = "validation"
"""The split this script chooses on (the velocity temperature); ``tests/test_project.py``
checks that no script chooses on the test split."""

OUT = Path("results/critic_velocity")
SONGS = 40
"""Validation songs: 40, since the first 20, on which the defaults were chosen, flatter
them (``docs/results.md``)."""
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_velocity.py"
BEFORE = 1.4
"""The default velocity temperature this script judged (the package's default until its
choice replaced it: ``pianoacc_utils.defaults.DEFAULT_VELOCITY_TEMPERATURE``)."""
SETTINGS = (1.0, 1.2)
"""Velocity temperatures tried against :data:`BEFORE`."""
MARGIN = 0.01
CHECK_SLACK = 1
CHORDS = {"melody only": "estimated", "lead sheet": "annotated"}


def name(temperature: float, chords: str) -> str:
    return f"{chords}, velocity temperature {temperature:g}"


def systems(songs: list) -> dict[str, list]:
    """FNet at today's defaults with :data:`BEFORE` and with each of :data:`SETTINGS`, both
    chord settings."""
    made = {}
    for chords, source in CHORDS.items():
        made[name(BEFORE, chords)] = accompany_songs(
            songs, "validation", chords, "fnet", source, {"velocity_temperature": BEFORE})
        for temperature in SETTINGS:
            made[name(temperature, chords)] = accompany_songs(
                songs, "validation", name(temperature, chords), "fnet", source,
                {"velocity_temperature": temperature})
    return made


def critic_choice(report: dict) -> tuple[float | None, dict]:
    """The setting the critic's half of the rule keeps (``None``: none), and each setting's
    drops in accuracy against :data:`BEFORE` per chord setting."""
    rows = report["systems"]
    drops = accuracy_drops(rows, name, BEFORE, SETTINGS, CHORDS)
    kept = [t for t in SETTINGS if all(d > MARGIN for d in drops[t].values())]
    if not kept:
        return None, drops
    return max(kept, key=lambda t: sum(drops[t].values())), drops


def checks(temperature: float) -> dict:
    """The quality bar at today's defaults but ``temperature``: checks passed of those the
    pianist passes."""
    config = evaluation.EvaluationConfig(
        split="validation", segments=32, chords="estimated", copy_check=False, critic=False,
        velocity_temperature=temperature)
    counted = checks_the_pianist_passes(quality_run(config), "fnet")
    return {"passed": counted["passed"], "checks": counted["checks"]}


def markdown(report: dict) -> str:
    critic_report, choice = report["critic_report"], report["choice"]
    settings = critic_report["settings"]
    lines = [
        "# The velocity temperature at today's defaults, on validation",
        "",
        f"Written by `{COMMAND}` ({critic_report['seconds']:.0f} s for the critic); "
        f"`.venv/bin/python results/critic_velocity.py --report` rewrites it from `{OUT}.json`. "
        f"FNet on the first {len(settings['songs'])} whole validation songs "
        f"({settings['bars']} bars) at today's defaults (8 candidates per window, reranked, "
        "windows primed by 6 bars, sampling seed 0) but for the velocity temperature, from "
        "the melody alone and with the annotated chords. Accuracy of the best of the critic's "
        "three classifiers on held-out songs (0.5 = indistinguishable; 95% interval from "
        "resampling songs). Rule, fixed before the results: a setting replaces "
        f"{BEFORE:g} only if it lowers both accuracies by more than "
        f"{MARGIN}; among those the lowest mean; then only if it passes at least as many of "
        f"the quality bar's checks as today's defaults less {CHECK_SLACK}.",
        "",
        "| velocity temperature | critic, melody only | critic, lead sheet | change, melody only "
        "| change, lead sheet |",
        "|---|---|---|---|---|",
    ]
    rows = critic_report["systems"]
    for temperature in (BEFORE, *SETTINGS):
        cells = [critic.accuracy_cell(rows[name(temperature, c)]) for c in CHORDS]
        drops = report["drops"].get(f"{temperature:g}")
        changes = ([f"{-drops[c]:+.3f}" for c in CHORDS] if drops else ["", ""])
        label = f"{temperature:g}" + (" (the default judged)" if temperature == BEFORE
                                      else "")
        lines.append(f"| {label} | {' | '.join(cells)} | {' | '.join(changes)} |")
    if report.get("checks"):
        lines += ["", "Quality bar (checks passed of those the pianist passes): " + ", ".join(
            f"{t} {c['passed']} of {c['checks']}" for t, c in report["checks"].items()) + "."]
    verdict = (f"**Chosen: velocity temperature {choice:g}.**" if choice is not None else
               f"**The default velocity temperature, {BEFORE:g}, stays**: "
               + ("no lower setting lowers both accuracies by more than the margin."
                  if report["critic_choice"] is None else
                  f"{report['critic_choice']:g} passed the critic's half of the rule but "
                  "not the quality bar's."))
    lines += ["", verdict, "", "The critic's full report (controls and what gives each "
              "system away) follows.", "", critic.critic_markdown(critic_report)]
    return "\n".join(lines) + "\n"


def main() -> None:
    count = songs_or_report(__doc__, OUT, markdown, SONGS)
    if count is None:
        return
    songs = whole_songs(count)
    made = systems(songs)
    critic_in_tensorflow(__file__, count)
    critic_report = critic_on_songs(songs, made, command=COMMAND)
    kept, drops = critic_choice(critic_report)
    choice, counted = None, {}
    if kept is not None:
        counted = {f"{t:g}": checks(t) for t in (BEFORE, kept)}
        today = counted[f"{BEFORE:g}"]["passed"]
        choice = kept if counted[f"{kept:g}"]["passed"] >= today - CHECK_SLACK else None
    report = {"critic_report": critic_report, "critic_choice": kept, "choice": choice,
              "drops": {f"{t:g}": d for t, d in drops.items()}, "checks": counted}
    log(f"chosen: {choice}")
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
