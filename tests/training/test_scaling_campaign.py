"""The scaling campaign (``results/scaling.py``) fits only runs that are ready: sizes up to
the shipped one once they reached every budget, the larger one from a few budgets on; and
it writes no report until each encoder has enough sizes, spanning enough, one larger than
the shipped model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "results" / "scaling.py"


@pytest.fixture(scope="module")
def campaign():
    spec = importlib.util.spec_from_file_location("scaling_campaign", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(campaign, kind: str, size: str, parameters: int, budgets: int) -> dict:
    rows = [{"budget": budget, "tokens": budget, "val_loss": 3.0}
            for budget in campaign.BUDGETS[:budgets]]
    return {"kind": kind, "size": size, "parameters": {"total": parameters}, "budgets": rows,
            "finished": budgets == len(campaign.BUDGETS)}


def campaign_runs(campaign, larger_budgets: int, small_budgets: int | None = None) -> list[dict]:
    every = len(campaign.BUDGETS)
    return [run(campaign, kind, size, parameters, budgets)
            for kind in ("fnet", "transformer")
            for size, parameters, budgets in (("xs", 90_000, every),
                                              ("s", 330_000, small_budgets or every),
                                              ("l", 6_900_000, larger_budgets))]


def test_sizes_up_to_the_shipped_one_need_every_budget_the_larger_a_few(campaign):
    every = len(campaign.BUDGETS)
    assert campaign.ready_for_fit(run(campaign, "fnet", "s", 330_000, every))
    assert not campaign.ready_for_fit(run(campaign, "fnet", "s", 330_000, every - 1))
    assert not campaign.ready_for_fit(run(campaign, "fnet", "m", 1_060_000, every - 1))
    assert campaign.ready_for_fit(run(campaign, "fnet", "l", 6_900_000,
                                      campaign.LARGER_MIN_BUDGETS))
    assert not campaign.ready_for_fit(run(campaign, "fnet", "l", 6_900_000,
                                          campaign.LARGER_MIN_BUDGETS - 1))


def test_the_report_waits_for_enough_sizes_and_one_larger_than_shipped(campaign):
    assert campaign.fit_gaps(campaign_runs(campaign, larger_budgets=3)) == []
    gaps = campaign.fit_gaps(campaign_runs(campaign, larger_budgets=2))
    assert any("fnet: 2 sizes ready" in gap for gap in gaps)
    assert any("transformer: no size larger than the shipped m" in gap for gap in gaps)
    # an unfinished small size would mix budgets: it is left out, and too few remain
    gaps = campaign.fit_gaps(campaign_runs(campaign, larger_budgets=4, small_budgets=5))
    assert any("fnet: 2 sizes ready (xs, l)" in gap for gap in gaps)


def test_three_sizes_must_span_ten_times(campaign):
    narrow = [{**r, "parameters": {"total": 1_000_000 + index}}
              for index, r in enumerate(campaign_runs(campaign, larger_budgets=3))]
    assert any("span 1.0x" in gap for gap in campaign.fit_gaps(narrow))


def test_a_run_reached_the_budgets_asked_of_it(campaign):
    partial = run(campaign, "fnet", "l", 6_900_000, 4)
    assert campaign.reached(partial, list(campaign.BUDGETS[:4]))
    assert not campaign.reached(partial, list(campaign.BUDGETS[:5]))
    assert not campaign.reached_every_budget(partial)
    assert campaign.reached({}, []) and not campaign.reached({}, [250_000])
