"""The rules by which scripts in ``results/`` choose, on made-up measurements, and what
they write from the committed reports."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"


def results_modules(*names: str) -> tuple:
    """The scripts of ``results/`` named, imported as modules (their folder on the path
    only while importing)."""
    sys.path.insert(0, str(RESULTS))
    try:
        return tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(str(RESULTS))


@pytest.fixture(scope="module")
def scripts():
    return results_modules("checkpoint_choice", "reranker")


SHIPPED = {"melody_only": 0.60, "lead_sheet": 0.58}
LOSSES = {"shipped": 1.63, "continued": 1.59}
CHECKS = {"shipped": 17, "continued": 17}


@pytest.mark.parametrize(
    ("continued", "losses", "checks", "chosen"),
    [
        ({"melody_only": 0.55, "lead_sheet": 0.56}, LOSSES, CHECKS, "continued"),
        # lower by no more than the margin on the mean of the two: a tie keeps the shipped
        ({"melody_only": 0.595, "lead_sheet": 0.575}, LOSSES, CHECKS, "shipped"),
        # much better from the melody alone, worse by more than the margin with a lead sheet
        ({"melody_only": 0.50, "lead_sheet": 0.60}, LOSSES, CHECKS, "shipped"),
        # the critic prefers it, but its loss is not lower, or it passes fewer checks
        ({"melody_only": 0.55, "lead_sheet": 0.56}, {"shipped": 1.59, "continued": 1.59},
         CHECKS, "shipped"),
        ({"melody_only": 0.55, "lead_sheet": 0.56}, LOSSES,
         {"shipped": 17, "continued": 16}, "shipped"),
    ],
)
def test_a_model_replaces_the_shipped_one_only_when_every_measure_agrees(
    scripts, continued, losses, checks, chosen
):
    checkpoint_choice, _ = scripts
    assert checkpoint_choice.choose(SHIPPED, continued, losses, checks) == chosen


def test_the_reranker_report_averages_each_kind_of_window_apart(scripts):
    _, reranker = scripts
    names = reranker.feature_names()
    features = np.zeros((5, len(names)))
    column = names.index("duration_median")
    features[:2, column] = [0.8, 1.0]  # two pianist windows
    features[2:, column] = [0.4, 0.5, 0.6]  # three of a model
    means = reranker.window_means(features, {"pianist": 2, "model": 3})
    assert means["pianist"]["duration_median"] == pytest.approx(0.9)
    assert means["model"]["duration_median"] == pytest.approx(0.5)
    assert set(means["model"]) == set(reranker.SHOWN)


def test_the_means_table_keeps_its_columns_when_the_report_is_read_back(scripts):
    _, reranker = scripts
    means = {"pianist": dict.fromkeys(reranker.SHOWN, 1.0), "model": dict.fromkeys(reranker.SHOWN, 2.0)}
    means["model"]["duration_median"] = 0.5
    written = {name: dict(sorted(values.items())) for name, values in sorted(means.items())}
    rows = reranker.means_table(written).splitlines()
    header = rows[2].strip("|").split("|")
    model = rows[5].strip("|").split("|")
    assert [cell.strip() for cell in header[1:]] == list(reranker.SHOWN)
    assert model[0].strip() == "model" and rows[4].startswith("| pianist |")
    assert model[1 + reranker.SHOWN.index("duration_median")].strip() == "0.5"


@pytest.fixture(scope="module")
def reporting():
    return results_modules("critic_velocity", "larger_model_test")


def velocity_report(critic_velocity, accuracies: dict) -> dict:
    """A critic report with made-up accuracies: temperature -> (melody only, lead sheet)."""
    return {"systems": {critic_velocity.name(t, c): {"accuracy": a}
                        for t, pair in accuracies.items()
                        for c, a in zip(critic_velocity.CHORDS, pair)}}


@pytest.mark.parametrize(
    ("accuracies", "kept"),
    [
        # both lower by more than the margin: the one lower on the mean of the two
        ({1.4: (0.66, 0.65), 1.0: (0.62, 0.63), 1.2: (0.60, 0.61)}, 1.2),
        # lower from the melody alone only: neither is kept
        ({1.4: (0.66, 0.65), 1.0: (0.60, 0.655), 1.2: (0.62, 0.70)}, None),
        # lower by no more than the margin
        ({1.4: (0.66, 0.65), 1.0: (0.655, 0.645), 1.2: (0.652, 0.641)}, None),
    ],
)
def test_a_velocity_temperature_replaces_todays_only_when_both_settings_gain(
    reporting, accuracies, kept
):
    critic_velocity, _ = reporting
    chosen, drops = critic_velocity.critic_choice(velocity_report(critic_velocity, accuracies))
    assert chosen == kept
    assert set(drops) == set(critic_velocity.SETTINGS)


def test_the_larger_models_card_is_written_from_the_committed_reports(reporting, monkeypatch):
    """``pretrained/fnet_l/MODEL_CARD.md`` is what ``results/larger_model_test.py`` writes
    from the committed reports, and names the digests of the files beside it."""
    _, larger_model_test = reporting
    monkeypatch.chdir(RESULTS.parent)  # the script's paths are the repository's
    report = json.loads(larger_model_test.OUT.with_suffix(".json").read_text())
    written = larger_model_test.card(report)
    assert larger_model_test.CARD.read_text() == written
    for name in ("model.keras", "reranker.npz"):
        digest = hashlib.sha1((larger_model_test.CARD.parent / name).read_bytes()).hexdigest()
        assert f"`{name}` (SHA-1 {digest[:12]})" in written
    assert report["settings"]["split"] == "test" and larger_model_test.DECIDES_ON is None


def test_the_larger_models_report_names_the_velocity_temperature_it_was_sampled_at(reporting):
    """The committed test report was sampled at 1.4, the default before 1.2; a report whose
    settings lack it is refused with the file named."""
    _, larger_model_test = reporting
    report = json.loads((RESULTS.parent / larger_model_test.OUT).with_suffix(".json").read_text())
    assert larger_model_test.velocity_made_at(report["settings"]) == "1.4"
    with pytest.raises(ValueError, match="larger_model_test.json"):
        larger_model_test.velocity_made_at({"sampling": "temperature 1.0"})


def test_the_pianists_dynamics_are_measured_per_song_and_written_from_the_report():
    """``results/pianist_dynamics.py``: the percentiles of the songs' means are ordered, the
    mean is a velocity spread, and the committed ``.md`` is what it writes from the JSON."""
    (pianist_dynamics,) = results_modules("pianist_dynamics")
    row = pianist_dynamics.song_set("validation", 3)
    assert row["windows"] > 0 and 0 < row["mean"] < 64
    assert row["song_p10"] <= row["song_median"] <= row["song_p90"]
    out = RESULTS.parent / pianist_dynamics.OUT
    report = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".md").read_text() == pianist_dynamics.markdown(report)
    assert [(r["split"], r["songs"]) for r in report["sets"]] == [
        (split, count) for split, count, _ in pianist_dynamics.SETS]


def choice_report(critic_choice, accuracies: dict) -> dict:
    """A critic report with made-up accuracies: rule -> (melody only, lead sheet); every
    rule not named at today's accuracies."""
    today = accuracies[critic_choice.TODAY]
    return {"systems": {critic_choice.name(rule, chords): {"accuracy": pair[i]}
                        for rule in critic_choice.RULES
                        for pair in [accuracies.get(rule, today)]
                        for i, chords in enumerate(critic_choice.CHORDS)}}


@pytest.mark.parametrize(
    ("accuracies", "kept"),
    [
        ({"keep the best": (0.64, 0.61), "draw, beta 1": (0.60, 0.59),
          "draw, beta 2": (0.62, 0.58)}, "draw, beta 1"),
        # lower with a lead sheet only, or by no more than the margin: today's stays
        ({"keep the best": (0.64, 0.61), "draw, beta 1": (0.66, 0.55)}, "keep the best"),
        ({"keep the best": (0.64, 0.61), "draw, beta 2": (0.632, 0.601)}, "keep the best"),
    ],
)
def test_another_way_of_choosing_candidates_replaces_todays_only_when_both_settings_gain(
    accuracies, kept
):
    (critic_choice,) = results_modules("critic_choice")
    chosen, drops = critic_choice.choice(choice_report(critic_choice, accuracies))
    assert chosen == kept
    assert set(drops) == set(critic_choice.RULES) - {critic_choice.TODAY}


def test_the_choice_of_how_candidates_are_chosen_is_written_from_its_report():
    """The committed ``results/critic_choice.md`` is what the script writes from its JSON,
    and its verdict follows from the accuracies there."""
    (critic_choice,) = results_modules("critic_choice")
    out = RESULTS.parent / critic_choice.OUT
    report = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".md").read_text() == critic_choice.markdown(report)
    assert critic_choice.choice(report["critic_report"])[0] == report["choice"]
    assert report["critic_report"]["settings"]["split"] == "validation"


def candidates_report(critic_candidates, accuracies: dict) -> dict:
    """A critic report with made-up accuracies: count -> (melody only, lead sheet)."""
    return {"systems": {critic_candidates.name(count, chords): {"accuracy": pair[i]}
                        for count, pair in accuracies.items()
                        for i, chords in enumerate(critic_candidates.CHORDS)}}


@pytest.mark.parametrize(
    ("accuracies", "kept"),
    [
        # both lower: the fewest within the margin of the lowest mean
        ({8: (0.64, 0.61), 12: (0.62, 0.59), 16: (0.615, 0.585)}, 12),
        # lower with a lead sheet only, the other no higher than the margin allows
        ({8: (0.64, 0.61), 12: (0.64, 0.61), 16: (0.645, 0.57)}, 16),
        # a lead sheet gains, but the melody alone loses more than the margin
        ({8: (0.64, 0.61), 12: (0.64, 0.61), 16: (0.66, 0.56)}, 8),
        # the mean lowers by no more than the margin
        ({8: (0.64, 0.61), 12: (0.635, 0.605), 16: (0.632, 0.602)}, 8),
    ],
)
def test_more_candidates_replace_todays_count_only_when_the_mean_gains_and_neither_loses(
    accuracies, kept
):
    (critic_candidates,) = results_modules("critic_candidates")
    chosen, drops = critic_candidates.choice(candidates_report(critic_candidates, accuracies))
    assert chosen == kept
    assert set(drops) == set(critic_candidates.COUNTS) - {critic_candidates.TODAY}


def test_the_choice_of_how_many_candidates_is_written_from_its_report():
    """The committed ``results/critic_candidates.md`` is what the script writes from its
    JSON, its verdict follows from the accuracies there, and it judged validation songs."""
    (critic_candidates,) = results_modules("critic_candidates")
    out = RESULTS.parent / critic_candidates.OUT
    report = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".md").read_text() == critic_candidates.markdown(report)
    assert critic_candidates.choice(report["critic_report"])[0] == report["choice"]
    assert report["critic_report"]["settings"]["split"] == "validation"


def test_a_judging_scripts_command_line_judges_songs_or_only_rewrites_its_report(
    tmp_path, monkeypatch
):
    """``critic_validation.songs_or_report``: ``--report`` writes the .md again from the
    .json and judges nothing; otherwise it gives the number of songs to judge."""
    (critic_validation,) = results_modules("critic_validation")
    out = tmp_path / "made_up"
    out.with_suffix(".json").write_text(json.dumps({"accuracy": 0.6}))

    def markdown(report):
        return f"accuracy {report['accuracy']}\n"

    monkeypatch.setattr("sys.argv", ["script", "--report"])
    assert critic_validation.songs_or_report("Doc.", out, markdown, 40) is None
    assert out.with_suffix(".md").read_text() == "accuracy 0.6\n"
    monkeypatch.setattr("sys.argv", ["script", "--songs", "3"])
    assert critic_validation.songs_or_report("Doc.", out, markdown, 40) == 3
    monkeypatch.setattr("sys.argv", ["script"])
    assert critic_validation.songs_or_report("Doc.", out, markdown, 40) == 40
