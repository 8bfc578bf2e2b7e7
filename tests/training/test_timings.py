"""What the training stage times: each encoder's training-step time at growing lengths
(``training.step_time``) and the CPU precision a run chooses by timing its own steps
(``training.precision``). The timing machinery they call is tested in
``tests/backends/test_speed.py``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import pytest

from pianoacc_utils.backends import speed
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.models import ModelConfig
from pianoacc_utils.prepare import load_split, prepare
from pianoacc_utils.training import (
    PROFILES,
    SegmentBatches,
    TrainConfig,
    compile_model,
    export_run,
    train,
)

QUICK = PROFILES["quick"]


@pytest.fixture(scope="module")
def quick_data(test_environment) -> Path:
    """The quick profile's prepared arrays (built once into the test session's cache)."""
    return prepare(QUICK.prepare, progress=False)


def test_measure_step_time_times_each_length():
    from pianoacc_utils.training import measure_step_time

    config = ModelConfig(
        melody_length=8, accompaniment_length=8, hidden_dim=16, num_heads=2,
        intermediate_dim=32, encoder_layers=1, decoder_layers=1, dropout=0.0,
    )
    rows = measure_step_time("transformer", [16, 32], config, batch_size=2, steps=2)
    assert [(row["kind"], row["length"], row["steps"]) for row in rows] == [
        ("transformer", 16, 2), ("transformer", 32, 2)
    ]
    for row in rows:
        assert 0 < row["ms_per_step_min"] <= row["ms_per_step"]
        assert row["tokens_per_second"] == pytest.approx(
            2 * row["length"] / (row["ms_per_step"] / 1000), rel=0.01
        )
    # Each length gets its own model: 16 more positions in both position embeddings.
    assert rows[1]["parameters"] - rows[0]["parameters"] == 2 * 16 * 16


# --------------------------------------------------------------------------- CPU precision

AMX = frozenset({"avx2", "fma", "avx512_bf16", "amx_tile", "amx_bf16"})
EPYC = frozenset({"avx2", "fma"})


def fake_timer(seconds: dict[str, float]):
    """A ``time_steps`` for :func:`choose_cpu_precision`: three steps of the given seconds
    per precision (the middle one slower, so that the median is what is compared)."""
    calls = []

    def time_steps(precision: str) -> list[float]:
        calls.append(precision)
        return [seconds[precision], seconds[precision] * 1.5, seconds[precision]]

    return time_steps, calls


def passing_check(float32: float = 3.0, bfloat16: float = 3.004):
    """A ``check_loss`` returning fixed validation losses, counting its calls."""
    from pianoacc_utils.training import LossCheck

    calls = []

    def check_loss() -> LossCheck:
        calls.append(1)
        return LossCheck(10, 2, float32, bfloat16)

    return check_loss, calls


def test_precision_chooser_picks_the_faster_of_two_timings(monkeypatch):
    from pianoacc_utils.training import choose_cpu_precision

    monkeypatch.delenv("PIANOACC_CPU_PRECISION", raising=False)
    where = {"flags": AMX, "processor": "Intel Xeon", "backend": "tensorflow"}
    # bfloat16 2.5x faster and the loss kept: bfloat16, with both timings recorded.
    timer, timed = fake_timer({"float32": 2.0, "mixed_bfloat16": 0.8})
    check, checked = passing_check()
    choice = choose_cpu_precision(timer, check, **where)
    assert choice.precision == "mixed_bfloat16" and sorted(timed) == ["float32", "mixed_bfloat16"]
    assert checked == [1] and choice.loss_check.passed
    assert choice.median_step_seconds() == pytest.approx({"float32": 2.0, "mixed_bfloat16": 0.8})
    record = choice.describe()
    assert record["processor"] == "Intel Xeon" and record["loss_check"]["passed"] is True
    assert "2.50x" in record["reason"]
    # float32 faster (the small profile on AMX): float32, and no loss check is spent.
    timer, _ = fake_timer({"float32": 0.8, "mixed_bfloat16": 1.1})
    check, checked = passing_check()
    choice = choose_cpu_precision(timer, check, **where)
    assert choice.precision == "float32" and checked == [] and choice.loss_check is None
    assert choice.step_seconds["mixed_bfloat16"][0] == pytest.approx(1.1)
    # bfloat16 under 5% faster: a tie, float32.
    timer, _ = fake_timer({"float32": 1.0, "mixed_bfloat16": 0.97})
    assert choose_cpu_precision(timer, check, **where).precision == "float32"
    # bfloat16 faster but not loss-checked: float32, and the record says how to allow it.
    timer, _ = fake_timer({"float32": 2.0, "mixed_bfloat16": 0.8})
    choice = choose_cpu_precision(timer, None, **where)
    assert choice.precision == "float32" and "--loss-check" in choice.reason
    # bfloat16 faster but it raised the validation loss: float32, the losses recorded.
    check, checked = passing_check(3.0, 3.2)
    choice = choose_cpu_precision(timer, check, **where)
    assert choice.precision == "float32" and checked == [1]
    assert choice.describe()["loss_check"]["val_loss"]["mixed_bfloat16"] == pytest.approx(3.2)


def test_precision_chooser_honours_the_override_and_skips_without_bfloat16_units(monkeypatch):
    from pianoacc_utils.training import CPU_PRECISION_VARIABLE, choose_cpu_precision

    def never(precision: str) -> list[float]:
        raise AssertionError("timed although nothing needed timing")

    monkeypatch.delenv(CPU_PRECISION_VARIABLE, raising=False)
    choice = choose_cpu_precision(never, flags=EPYC, processor="AMD EPYC", backend="jax")
    assert (choice.precision, choice.reason) == ("float32", "no bfloat16 units")
    assert choice.step_seconds == {} and choice.describe()["processor"] == "AMD EPYC"
    fixed = ("float32", "set by the profile")
    assert choose_cpu_precision(never, fixed=fixed, flags=AMX).reason == "set by the profile"
    with pytest.raises(PianoaccError, match="cpu_precision 'bf16': expected one of"):
        choose_cpu_precision(never, fixed=("bf16", "typo"), flags=AMX)
    monkeypatch.setenv(CPU_PRECISION_VARIABLE, "mixed_bfloat16")
    choice = choose_cpu_precision(never, flags=EPYC, processor="AMD EPYC")
    assert (choice.precision, choice.reason) == ("mixed_bfloat16", "set by PIANOACC_CPU_PRECISION")
    monkeypatch.setenv(CPU_PRECISION_VARIABLE, "bf16")
    with pytest.raises(PianoaccError, match="PIANOACC_CPU_PRECISION='bf16': expected one of"):
        choose_cpu_precision(never, flags=AMX)


def test_precision_loss_rule_on_fake_losses():
    from pianoacc_utils.training import LossCheck, bfloat16_keeps_the_loss

    assert bfloat16_keeps_the_loss(2.50, 2.505)  # within 0.01 nats
    assert bfloat16_keeps_the_loss(2.50, 2.40)  # lower is fine
    assert not bfloat16_keeps_the_loss(2.50, 2.52)
    assert not bfloat16_keeps_the_loss(2.50, float("nan"))  # diverged
    assert bfloat16_keeps_the_loss(2.50, 2.52, tolerance=0.05)
    assert not LossCheck(100, 8, 2.50, 2.52).passed


def test_precision_loss_check_trains_both_from_the_same_weights(monkeypatch, quick_data):
    from tiny import TINY

    from pianoacc_utils.training import loss_check, precision

    def eager(model, settings):  # the same ops, without tracing four graphs
        model = compile_model(model, settings)
        model.run_eagerly = True
        return model

    monkeypatch.setattr(precision, "compile_model", eager)
    config = ModelConfig(kind="fnet", **TINY)
    batches = {"model_config": config, "batch_size": 4, "length_multiple": 64}
    train_batches = SegmentBatches(load_split(quick_data, "train"), max_segments=8, **batches)
    validation = SegmentBatches(load_split(quick_data, "validation"), shuffle=False,
                                max_segments=12, **batches)
    settings = TrainConfig(learning_rate=3e-3, warmup_steps=2)
    check = loss_check(config, settings, train_batches, validation, steps=3, validation_count=2)
    assert check.steps == 3 and check.validation_batches == 2
    assert 2.0 < check.float32 < 7.0 and 2.0 < check.mixed_bfloat16 < 7.0
    assert abs(check.mixed_bfloat16 - check.float32) < 0.1  # the same weights and batches
    assert keras.mixed_precision.global_policy().name == "float32"  # restored


def test_precision_choice_is_recorded_in_config_and_model_card(monkeypatch, quick_data, tmp_path):
    """A run on a (pretended) AMX processor where bfloat16 times faster and passes the loss
    check trains in bfloat16; config.json and the model card say so; a resume on the same
    processor keeps it, on another one times again."""
    from pianoacc_utils.training import LossCheck, precision

    monkeypatch.delenv("PIANOACC_CPU_PRECISION", raising=False)
    monkeypatch.setattr(precision, "processor_flags", lambda: AMX)
    here = speed.timed_on()
    monkeypatch.setattr(speed, "timed_on", lambda: ("Intel Xeon (pretended)", here[1]))
    seconds = {"float32": 0.9, "mixed_bfloat16": 0.3}
    monkeypatch.setattr(precision, "time_precision",
                        lambda config, settings, batch, name: [seconds[name]] * 3)
    monkeypatch.setattr(precision, "loss_check", lambda *args: LossCheck(100, 8, 3.0, 3.001))
    settings = dataclasses.replace(QUICK.train, max_train_segments=32,
                                   max_validation_segments=16, cpu_precision=None)
    profile = dataclasses.replace(QUICK, train=settings)
    out = tmp_path / "run"
    train(profile, "fnet", out, epochs=1, progress=False, data=quick_data, loss_check=True)
    saved = json.loads((out / "config.json").read_text())
    assert saved["precision"] == "mixed_bfloat16"
    record = saved["precision_choice"]
    assert record["processor"] == "Intel Xeon (pretended)" and record["backend"] == "tensorflow"
    assert record["median_step_seconds"] == pytest.approx(seconds)
    assert record["loss_check"]["passed"] is True and "3.00x" in record["reason"]
    card = (export_run(out, tmp_path / "shipped") / "MODEL_CARD.md").read_text()
    assert "- compute precision: mixed_bfloat16 (bfloat16 faster" in card
    assert "Intel Xeon (pretended)" in card

    def never(*args):
        raise AssertionError("a resume timed again")

    monkeypatch.setattr(precision, "time_precision", never)
    kept = precision.choose_for_run(profile.model_config("fnet"), profile.train, None, None,
                                    earlier=record)  # what train(..., resume=True) passes
    assert kept.describe() == record
    monkeypatch.setattr(speed, "timed_on", lambda: ("another processor", here[1]))
    monkeypatch.setattr(precision, "typical_batch", lambda batches: None)
    with pytest.raises(AssertionError, match="a resume timed again"):
        precision.choose_for_run(profile.model_config("fnet"), profile.train, None, None,
                                 earlier=record)
