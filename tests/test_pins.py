"""The package's behaviour, pinned so that it holds on every processor (``tests/pins.py``):
the pins match the committed ``tests/fixtures/pins.json``, survive last-bit changes of
the weights, and fail on deliberate changes of behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pins import PINS_PATH, compute_pins, model_pins, pin_differences


def committed() -> dict:
    return json.loads(PINS_PATH.read_text())


@pytest.mark.slow
def test_behaviour_matches_the_committed_pins():
    expected = committed()
    actual = json.loads(json.dumps(compute_pins()))
    assert actual.keys() == expected.keys()
    assert pin_differences(expected, actual) == []


def test_pin_differences_names_what_moved():
    expected = committed()
    moved = json.loads(json.dumps(expected))
    moved["prepared"]["test"] = "0" * 64
    moved["fnet_teacher_forced"]["logits"][0][0] += 0.1
    moved["transformer_teacher_forced"]["loss"] += 0.01
    first = int(np.argmax(np.asarray(expected["fnet_greedy"]["margins"]) > 0))
    moved["fnet_greedy"]["tokens"][first] += 1
    moved["fnet_sampler"]["teacher_token_share"] += 0.1
    moved["transformer_sampled"]["notes_per_bar"]["mean"] += 5.0
    problems = "\n".join(pin_differences(expected, moved))
    for key in ("prepared", "fnet_teacher_forced.logits", "transformer_teacher_forced.loss",
                "fnet_greedy", "fnet_sampler.teacher_token_share",
                "transformer_sampled.notes_per_bar"):
        assert key in problems
    assert pin_differences(expected, expected) == []


def test_a_greedy_token_after_a_close_call_is_not_compared():
    expected = {"tokens": [5, 6, 7, 8], "margins": [1.0, 0.0001, 1.0, 1.0]}
    after = {"tokens": [5, 6, 9, 9], "margins": [1.0, 0.0001, 1.0, 1.0]}
    at = {"tokens": [5, 9, 9, 9], "margins": [1.0, 0.0001, 1.0, 1.0]}
    assert pin_differences({"x_greedy": expected}, {"x_greedy": after}) == []
    assert pin_differences({"x_greedy": expected}, {"x_greedy": at}) != []


@pytest.fixture
def fnet_only(monkeypatch):
    import pins

    monkeypatch.setattr(pins, "MODELS", ("fnet",))


@pytest.mark.slow
def test_pins_hold_when_the_weights_move_in_their_last_bits(fnet_only, monkeypatch):
    """What another processor does to the float kernels, done to the weights: each
    weight multiplied by 1 +- 2**-22 at random (two units in the last place)."""
    from pianoacc_utils import generation

    load = generation.load_checkpoint
    rng = np.random.default_rng(0)

    def perturbed(name):
        model, window = load(name)
        for variable in model.weights:
            value = np.asarray(variable.numpy())
            if value.dtype == np.float32:
                nudge = rng.choice([-1.0, 1.0], value.shape) * 2.0**-22
                variable.assign((value * (1 + nudge)).astype(np.float32))
        return model, window

    import pins

    monkeypatch.setattr(generation, "load_checkpoint", perturbed)
    actual = json.loads(json.dumps(pins.model_pins(("teacher_forced", "greedy", "sampler"))))
    assert pin_differences(committed(), actual) == []


@pytest.mark.slow
def test_pins_fail_when_the_sampling_default_changes(fnet_only, monkeypatch):
    from pianoacc_utils.generation import SamplingConfig

    from pianoacc_utils.defaults import DEFAULT_TEMPERATURE

    defaults = list(SamplingConfig.__init__.__defaults__)
    assert defaults[0] == DEFAULT_TEMPERATURE
    defaults[0] = 0.7 if DEFAULT_TEMPERATURE != 0.7 else 1.0  # another temperature
    monkeypatch.setattr(SamplingConfig.__init__, "__defaults__", tuple(defaults))
    actual = json.loads(json.dumps(model_pins(("sampler",))))
    problems = pin_differences(committed(), actual)
    assert any(p.startswith("fnet_sampler.mean_log_probability") for p in problems)


@pytest.mark.slow
def test_pins_fail_when_the_chord_mask_is_shifted(fnet_only, monkeypatch):
    from pianoacc_utils.generation import decoder, sampling

    allowed = sampling.chord_allowed

    def shifted(tables):  # the chord one semitone up
        tables = np.asarray(tables).copy()
        tables[..., :12] = np.roll(tables[..., :12], 1, axis=-1)
        return allowed(tables)

    monkeypatch.setattr(sampling, "chord_allowed", shifted)
    monkeypatch.setattr(decoder, "chord_allowed", shifted)
    actual = json.loads(json.dumps(model_pins(("greedy", "sampler"))))
    problems = pin_differences(committed(), actual)
    assert any(p.startswith("fnet_greedy") for p in problems)
    assert any(p.startswith("fnet_sampler.note_on_in_chord") for p in problems)
