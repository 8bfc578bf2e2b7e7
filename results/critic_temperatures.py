"""Time shifts and pitches at temperatures of their own, against the critic, on validation.

    KERAS_BACKEND=jax .venv/bin/python results/critic_temperatures.py [--songs N] [--confirm]

Velocities are already drawn at a temperature of their own (``velocity_temperature``,
``results/critic_levers.md``); this script asks the same of the other kinds of token
(``SamplingConfig.shift_temperature``: how long to wait before the next event;
``pitch_temperature``: which note to strike), each a lever of the critic issue. Every
setting changes only the choice *among* that kind's tokens: the kind's share of the
probability stays what the model gives (``generation.kind_logits``).

First a screen, cheap: FNet from the melody alone on 20 whole *validation* songs with one
candidate per window (today's defaults otherwise), each setting of :data:`SETTINGS`
against the same with no own temperature. ``--confirm`` then runs the settings whose
screen beat that baseline by more than :data:`SCREEN_MARGIN` at today's defaults (eight
candidates per window, reranked), from the melody alone and with a lead sheet.

The rule, fixed before the results: a setting becomes a default only if, confirmed at
eight candidates, it lowers the critic's accuracy by more than 0.01 in both settings;
then the quality bar decides as for the other defaults (``results/critic_defaults.py``).
Writes ``results/critic_temperatures.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from critic_validation import (
    LEGACY_OVERLAP, accompany_songs, critic_in_tensorflow, critic_on_songs, whole_songs, write_report,
)

from pianoacc_utils.evaluation import critic

DECIDES_ON = "validation"
"""The split this script chooses on; ``tests/test_project.py`` checks that no script
chooses on the test split."""

OUT = Path("results/critic_temperatures")
SONGS = 20
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/critic_temperatures.py"
SETTINGS = {
    "time shifts at 0.8": {"shift_temperature": 0.8},
    "time shifts at 1.25": {"shift_temperature": 1.25},
    "pitches at 0.8": {"pitch_temperature": 0.8},
    "pitches at 1.25": {"pitch_temperature": 1.25},
}
"""Setting name -> the sampling fields it sets (the main temperature stays 1.0)."""
SCREEN_MARGIN = 0.02
"""How much lower than the baseline a screened setting's accuracy must be to be confirmed."""
MARGIN = 0.01
"""How much lower both confirmed accuracies must be for a setting to be adopted."""
CHORDS = {"melody only": "estimated", "lead sheet": "annotated"}
LEGACY = {"overlap_bars": LEGACY_OVERLAP}
"""The windows of the defaults when this report was written (``results/critic_overlap.py``
chose others later)."""


def screen(songs: list) -> dict[str, list]:
    """FNet from the melody alone with one candidate per window, per setting."""
    systems = {"no own temperature": accompany_songs(
        songs, "validation", "baseline", "fnet", "estimated", {"candidates": 1, **LEGACY})}
    for name, changes in SETTINGS.items():
        systems[name] = accompany_songs(
            songs, "validation", name, "fnet", "estimated", {**changes, "candidates": 1, **LEGACY})
    return systems


def confirm(songs: list, screened: dict) -> dict[str, list]:
    """The settings the screen kept at today's defaults (eight candidates), both chord
    settings, beside the defaults themselves."""
    base = screened["no own temperature"]["accuracy"]
    kept = [name for name in SETTINGS
            if screened[name]["accuracy"] < base - SCREEN_MARGIN]
    systems = {}
    for chords, source in CHORDS.items():
        systems[f"{chords}: today's defaults"] = accompany_songs(
            songs, "validation", chords, "fnet", source, LEGACY)
        for name in kept:
            systems[f"{chords}: {name}"] = accompany_songs(
                songs, "validation", f"{chords}: {name}", "fnet", source, {**SETTINGS[name], **LEGACY})
    return systems


def verdicts(report: dict) -> list[str]:
    """A line per confirmed setting: adopted or not, by the rule."""
    rows = report["systems"]
    lines = []
    for name in SETTINGS:
        if f"melody only: {name}" not in rows:
            continue
        drops = {c: rows[f"{c}: today's defaults"]["accuracy"] - rows[f"{c}: {name}"]["accuracy"]
                 for c in CHORDS}
        adopted = all(drop > MARGIN for drop in drops.values())
        lines.append(f"- *{name}*: {'adopted' if adopted else 'not adopted'} (accuracy "
                     + ", ".join(f"{c} {-d:+.2f}" for c, d in drops.items()) + ")")
    return lines


def markdown(report: dict) -> str:
    screened, settings = report["screen"], report["screen"]["settings"]
    base = screened["systems"]["no own temperature"]["accuracy"]
    lines = [
        "# Time shifts and pitches at their own temperatures, on validation",
        "",
        f"Written by `{COMMAND}`. FNet on {len(settings['songs'])} whole validation songs "
        f"({settings['bars']} bars), sampling seed 0, today's defaults (temperature 1.0, "
        "top-p 0.95, velocity temperature 1.4) but for the setting named. Accuracy of the "
        "better feature critic on held-out songs (0.5 = indistinguishable; 95% interval "
        "from resampling songs).",
        "",
        f"**Screen**: from the melody alone, one candidate per window. A setting goes on to "
        f"the confirmation if its accuracy is lower than the baseline's ({base:.2f}) by more "
        f"than {SCREEN_MARGIN}.",
        "",
        critic.critic_markdown(screened),
    ]
    confirmed = report.get("confirm")
    passed = [name for name in SETTINGS
              if screened["systems"][name]["accuracy"] < base - SCREEN_MARGIN]
    if not passed:
        lines += ["", "**Confirmation**: no setting passed the screen, so there is nothing to "
                  "confirm at eight candidates; today's defaults stay (no own temperature)."]
    elif confirmed is None:
        lines += ["", f"**Confirmation**: not run yet (`--confirm`) for {', '.join(passed)}."]
    else:
        lines += ["", "**Confirmation**: at eight candidates per window, both chord settings. "
                  f"Rule, fixed before the results: adopt a setting only if it lowers both "
                  f"accuracies by more than {MARGIN}.", "", *verdicts(confirmed), "",
                  critic.critic_markdown(confirmed)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    parser.add_argument("--confirm", action="store_true",
                        help="also run the settings the screen kept at eight candidates")
    args = parser.parse_args()
    songs = whole_songs(args.songs)
    stored = OUT.with_suffix(".json")
    if args.confirm:
        if not stored.is_file():
            raise SystemExit(f"{stored}: missing; run the screen first (without --confirm)")
        screened = json.loads(stored.read_text())["screen"]
        systems = confirm(songs, screened["systems"])
    else:
        systems = screen(songs)
    critic_in_tensorflow(__file__, args.songs, *(["--confirm"] if args.confirm else []))
    result = critic_on_songs(songs, systems, learned=False, settings=SETTINGS, command=COMMAND)
    report = {"screen": screened, "confirm": result} if args.confirm else {"screen": result}
    write_report(OUT, report, markdown(report))


if __name__ == "__main__":
    main()
