"""The package's behaviour, pinned: prepared arrays, generated tokens and segment metrics
equal the committed ``tests/fixtures/pins.json`` (see ``tests/pins.py``)."""

from __future__ import annotations

import json

import pytest
from pins import PINS_PATH, compute_pins


@pytest.mark.slow
def test_behaviour_matches_the_committed_pins():
    expected = json.loads(PINS_PATH.read_text())
    actual = json.loads(json.dumps(compute_pins(), sort_keys=True))
    assert actual.keys() == expected.keys()
    for key in sorted(expected):
        assert actual[key] == expected[key], f"pin {key!r} changed"
