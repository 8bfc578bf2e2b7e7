"""Training: batches, masked loss/metrics, schedule, overfitting, crash-safe resume, CLI.

Two devices, mixed precision and the `full` profile's model: ``test_gpu_path.py``; the
step timings and the CPU precision a run chooses: ``test_timings.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from pianoacc_utils import cli
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.models import NO_BAR, ModelConfig, build_model
from pianoacc_utils.prepare import load_split, prepare
from pianoacc_utils.training import (
    END_ID,
    PAD_ID,
    PROFILES,
    START_ID,
    MaskedAccuracy,
    MaskedSparseCrossentropy,
    Perplexity,
    Profile,
    SegmentBatches,
    TrainConfig,
    WarmupSchedule,
    compile_model,
    export_run,
    first_stage_profile,
    get_profile,
    pad_batch,
    padded_length,
    pick_strategy,
    read_history,
    run_profile,
    segment_batch,
    teacher_forcing,
    train,
)

QUICK = PROFILES["quick"]


def small_quick(train_segments: int = 256, validation_segments: int = 64) -> Profile:
    """The quick profile on fewer segments (same data, model and optimiser)."""
    settings = dataclasses.replace(
        QUICK.train,
        max_train_segments=train_segments,
        max_validation_segments=validation_segments,
    )
    return dataclasses.replace(QUICK, train=settings)


@pytest.fixture(scope="module")
def quick_data(test_environment) -> Path:
    """The quick profile's prepared arrays (built once into the test session's cache)."""
    return prepare(QUICK.prepare, progress=False)


# --------------------------------------------------------------------------- batches


def test_teacher_forcing_shifts_by_one_and_truncates():
    decoder, target = teacher_forcing([10, 11, 12], accompaniment_length=8)
    assert decoder.tolist() == [1, 10, 11, 12]
    assert target.tolist() == [10, 11, 12, 2]
    decoder, target = teacher_forcing([10, 11, 12, 13, 14], accompaniment_length=4)
    assert decoder.tolist() == [1, 10, 11, 12]
    assert target.tolist() == [10, 11, 12, 13]  # cut: no END
    assert padded_length(17, 16, 128) == 32
    assert padded_length(120, 16, 100) == 100
    assert padded_length(0, 16, 100) == 16
    assert pad_batch([np.array([5, 6]), np.array([7])], 3, rows=3).tolist() == [
        [5, 6, 0], [7, 0, 0], [0, 0, 0]
    ]


def test_segment_batches_line_up_and_bucket(quick_data):
    split = load_split(quick_data, "validation")
    config = QUICK.model_config("fnet")
    batches = SegmentBatches(split, config, batch_size=8, shuffle=True, seed=3, length_multiple=16)
    assert len(batches) == math.ceil(len(split) / 8)
    seen = 0
    for index in range(len(batches)):
        inputs, target = batches[index]
        melody, decoder = inputs["melody"], inputs["decoder_input"]
        assert melody.shape[0] == decoder.shape[0] == target.shape[0] == 8
        assert decoder.shape == target.shape and decoder.dtype == np.int32
        assert decoder.shape[1] % 16 == 0 or decoder.shape[1] == config.accompaniment_length
        assert melody.shape[1] <= config.melody_length
        real = decoder != 0
        seen += int(real[:, 0].sum())
        assert (decoder[real[:, 0], 0] == 1).all()  # every real row starts with START
        # Target is the decoder input moved left by one, padding in the same places.
        np.testing.assert_array_equal(target[:, :-1][real[:, 1:]], decoder[:, 1:][real[:, 1:]])
        assert ((target != 0) == real).all()
        # Bucketing: padded batches are not much longer than their longest row.
        assert decoder.shape[1] - real.sum(axis=1).max() < 16
    assert seen == len(split)
    first_epoch = [batches[i][1].shape for i in range(len(batches))]
    batches.on_epoch_end()
    assert [batches[i][1].shape for i in range(len(batches))] != first_epoch  # reshuffled


def test_fixed_tables_give_every_batch_the_same_table_and_bar_shapes(quick_data):
    split = load_split(quick_data, "validation")
    config = QUICK.model_config("fnet")
    options = {"batch_size": 4, "shuffle": True, "seed": 3, "length_multiple": 16}
    loose = SegmentBatches(split, config, **options)
    fixed = SegmentBatches(split, config, fixed_tables=True, **options)
    widths = {(loose[i][0]["harmony"].shape[1], loose[i][0]["bars"].shape[1])
              for i in range(len(loose))}
    assert len(widths) > 1  # otherwise this test would show nothing
    for index in range(len(fixed)):
        (a, target_a), (b, target_b) = loose[index], fixed[index]
        np.testing.assert_array_equal(target_a, target_b)
        assert b["harmony"].shape[1] == max(w[0] for w in widths)
        assert b["bars"].shape[1] == max(w[1] for w in widths)
        # The extra room is padding: no chord, no bar line.
        np.testing.assert_array_equal(b["harmony"][:, : a["harmony"].shape[1]], a["harmony"])
        assert not b["harmony"][:, a["harmony"].shape[1]:].any()
        np.testing.assert_array_equal(b["bars"][:, : a["bars"].shape[1]], a["bars"])
        assert (b["bars"][:, a["bars"].shape[1]:] == NO_BAR).all()


def test_segment_batch_pads_segments_as_training_does():
    """A batch built straight from POP909 segments is teacher-forced and padded like training's."""
    from pianoacc_utils import data

    segments = data.segment(data.load_song("001"), bars=2)[:2]
    config = QUICK.model_config("fnet")
    inputs, target = segment_batch(segments, config)
    decoder = inputs["decoder_input"]
    assert decoder.shape == target.shape and decoder.shape[0] == 2
    assert decoder.shape[1] % 16 == 0 and inputs["melody"].shape[1] % 16 == 0
    assert (decoder[:, 0] == START_ID).all()
    real = target != PAD_ID
    lengths = real.sum(axis=1)
    assert (target[np.arange(2), lengths - 1] == END_ID).all()  # short segments: END kept
    np.testing.assert_array_equal(target[:, :-1][real[:, 1:]], decoder[:, 1:][real[:, 1:]])
    assert inputs["harmony"].shape == (2, 8, 24)  # 2 bars of 4 beats, a row per beat
    assert inputs["bars"].shape == (2, 2)


# --------------------------------------------------------------------------- loss, metrics


def _logits_for(predicted: list[list[int]], vocabulary: int = 5, confidence: float = 4.0):
    """Logits that put ``confidence`` on the predicted token of every position."""
    logits = np.zeros((len(predicted), len(predicted[0]), vocabulary), dtype="float32")
    for b, row in enumerate(predicted):
        for t, token in enumerate(row):
            logits[b, t, token] = confidence
    return logits


def test_masked_loss_accuracy_and_perplexity_ignore_padding():
    target = np.array([[3, 4, 2, 0, 0], [4, 2, 0, 0, 0]])
    logits = _logits_for([[3, 1, 2, 3, 3], [4, 2, 1, 1, 1]])
    # Real tokens: 5, of which 4 predicted right (row 0, position 1 is wrong).
    log_z = math.log(math.exp(4.0) + 4)
    right, wrong = log_z - 4.0, log_z
    expected = (4 * right + wrong) / 5

    loss = float(MaskedSparseCrossentropy()(target, logits))
    assert loss == pytest.approx(expected, rel=1e-5)
    accuracy = MaskedAccuracy()
    accuracy.update_state(target, logits)
    assert float(accuracy.result()) == pytest.approx(0.8)
    perplexity = Perplexity()
    perplexity.update_state(target, logits)
    assert float(perplexity.result()) == pytest.approx(math.exp(expected), rel=1e-5)

    # Whatever the model predicts at padded positions changes nothing.
    noisy = logits.copy()
    noisy[target == 0] = np.random.default_rng(0).normal(size=(5, 5))
    assert float(MaskedSparseCrossentropy()(target, noisy)) == pytest.approx(loss, rel=1e-6)
    # Metrics accumulate over batches weighted by tokens, not by batches.
    accuracy.update_state(np.array([[3, 0, 0, 0, 0]]), _logits_for([[4, 0, 0, 0, 0]]))
    assert float(accuracy.result()) == pytest.approx(4 / 6)
    accuracy.reset_state()
    assert float(accuracy.result()) == 0.0


def test_label_smoothing_raises_the_loss_of_a_confident_right_answer():
    target = np.array([[3, 4, 0]])
    logits = _logits_for([[3, 4, 1]], confidence=10.0)
    plain = float(MaskedSparseCrossentropy()(target, logits))
    smoothed = float(MaskedSparseCrossentropy(label_smoothing=0.1)(target, logits))
    assert smoothed > plain + 0.5
    restored = MaskedSparseCrossentropy.from_config(
        MaskedSparseCrossentropy(label_smoothing=0.1).get_config()
    )
    assert restored.label_smoothing == 0.1


def test_warmup_schedule_rises_then_decays():
    schedule = WarmupSchedule(1e-3, warmup_steps=100)
    rates = [float(schedule(step)) for step in (0, 49, 99, 399, 9999)]
    assert rates[0] == pytest.approx(1e-5)
    assert rates[1] == pytest.approx(5e-4)
    assert rates[2] == pytest.approx(1e-3)
    assert rates[3] == pytest.approx(1e-3 * math.sqrt(100 / 400))
    assert rates[4] == pytest.approx(1e-4)
    cosine = WarmupSchedule(1e-3, 10, decay="cosine", decay_steps=110)
    assert float(cosine(59)) == pytest.approx(5e-4, rel=1e-4)
    assert float(cosine(500)) == pytest.approx(0.0, abs=1e-9)
    copy = WarmupSchedule.from_config(cosine.get_config())
    assert float(copy(59)) == pytest.approx(float(cosine(59)))
    with pytest.raises(PianoaccError, match="decay_steps"):
        WarmupSchedule(1e-3, 10, decay="cosine")


def test_profiles_serialise_and_fit_their_data():
    assert set(PROFILES) == {"quick", "small", "cpu", "full"}
    for profile in PROFILES.values():
        restored = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
        assert restored == profile
        assert profile.model_config("transformer").kind == "transformer"
    full = PROFILES["full"]
    assert full.model.accompaniment_length == 2048 and full.train.mixed_precision
    assert PROFILES["cpu"].prepare.transpositions == tuple(range(-3, 4))
    assert get_profile(QUICK) is QUICK
    with pytest.raises(PianoaccError, match="quick, small, cpu, full"):
        get_profile("huge")


# --------------------------------------------------------------------------- training


def test_overfits_four_real_segments(quick_data):
    """Inputs, targets and masks line up: a small model memorises 4 short segments."""
    split = load_split(quick_data, "train")
    lengths = split.lengths("accompaniment")
    chosen = [int(i) for i in np.flatnonzero((lengths > 60) & (lengths < 120))[:4]]
    assert len(chosen) == 4
    config = ModelConfig(
        kind="transformer", melody_length=128, accompaniment_length=128, hidden_dim=64,
        num_heads=2, intermediate_dim=128, encoder_layers=1, decoder_layers=1, dropout=0.0,
    )
    pairs = [teacher_forcing(split.accompaniment(i), 128) for i in chosen]
    length = max(len(p[0]) for p in pairs)
    inputs = {
        "melody": pad_batch([split.melody(i) for i in chosen], 128),
        "decoder_input": pad_batch([p[0] for p in pairs], length),
    }
    target = pad_batch([p[1] for p in pairs], length)
    keras.utils.set_random_seed(0)
    model = compile_model(
        build_model(config), TrainConfig(learning_rate=3e-3, warmup_steps=10, weight_decay=0.0)
    )
    for step in range(300):
        model.reset_metrics()
        logs = model.train_on_batch(inputs, target, return_dict=True)
        if logs["accuracy"] > 0.98:
            break
    logits = model(inputs, training=False)
    accuracy = MaskedAccuracy()
    accuracy.update_state(target, logits)
    assert float(accuracy.result()) > 0.95, (step, logs)
    assert float(MaskedSparseCrossentropy()(target, logits)) < 1.0  # from ln(323) = 5.8


def test_train_resume_continues_epochs_and_schedule(quick_data, tmp_path):
    profile = small_quick()
    out = tmp_path / "fnet"
    history = train(profile, "fnet", out, epochs=1, progress=False, data=quick_data)
    assert history["epoch"] == [0]
    state = json.loads((out / "training_state.json").read_text())
    steps_per_epoch = math.ceil(256 / profile.train.batch_size)
    assert state["epochs_done"] == 1 and state["optimizer_iterations"] == steps_per_epoch
    for name in ("best.keras", "last.keras", "config.json", "history.csv"):
        assert (out / name).is_file(), name
    assert any((out / "logs" / "train").iterdir()) and any((out / "logs" / "validation").iterdir())
    saved = json.loads((out / "config.json").read_text())
    assert saved["kind"] == "fnet" and Profile.from_dict(saved["profile"]) == profile

    with pytest.raises(PianoaccError, match="already holds"):
        train(profile, "fnet", out, epochs=1, progress=False, data=quick_data)
    with pytest.raises(PianoaccError, match="fnet/quick, not transformer/quick"):
        train(profile, "transformer", out, epochs=1, resume=True, data=quick_data)

    history = train(profile, "fnet", out, epochs=1, resume=True, progress=False, data=quick_data)
    assert history["epoch"] == [0, 1]
    state = json.loads((out / "training_state.json").read_text())
    assert state["epochs_done"] == 2 and state["optimizer_iterations"] == 2 * steps_per_epoch
    with (out / "history.csv").open() as handle:
        header = next(csv.reader(handle))
    for column in ("epoch", "loss", "val_loss", "accuracy", "perplexity", "lr", "val_accuracy"):
        assert column in header
    # The schedule went on: epoch 1 ends later in the warm-up/decay curve.
    schedule = WarmupSchedule(profile.train.learning_rate, profile.train.warmup_steps)
    assert history["lr"][1] == pytest.approx(float(schedule(2 * steps_per_epoch)), rel=1e-4)
    # Quick-profile training learns: loss and validation loss fall clearly.
    assert history["loss"][1] < history["loss"][0] - 0.5
    assert history["val_loss"][1] < history["val_loss"][0] - 0.2
    assert history["perplexity"][1] < history["perplexity"][0]
    assert read_history(out) == history
    best = keras.models.load_model(out / "best.keras")
    assert best.config == profile.model_config("fnet")

    # Shipping the run: the exported model predicts exactly as the best checkpoint.
    shipped = export_run(out, tmp_path / "shipped", wall_seconds=90.0, evaluation_markdown="| a |")
    for name in ("model.keras", "config.json", "history.csv", "MODEL_CARD.md"):
        assert (shipped / name).is_file(), name
    assert (shipped / "model.keras").stat().st_size < (out / "best.keras").stat().st_size
    card = (shipped / "MODEL_CARD.md").read_text()
    assert "epochs: 2" in card and f"optimizer steps: {2 * steps_per_epoch}" in card
    assert "wall time: 1.5 min" in card and "## Evaluation" in card
    inputs = {"melody": np.full((1, 8), 5, "int32"), "decoder_input": np.full((1, 6), 7, "int32")}
    exported = keras.models.load_model(shipped / "model.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(exported(inputs)), keras.ops.convert_to_numpy(best(inputs)),
        atol=1e-6,
    )

    # A longer run continued from the shipped weights (saved without their optimizer):
    # it starts from exactly those weights, with a fresh optimizer.
    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [np.array(w) for w in self.model.get_weights()]

    seen = FirstWeights()
    short = small_quick(train_segments=16, validation_segments=16)
    train(short, "fnet", tmp_path / "continued", epochs=1, progress=False, data=quick_data,
          callbacks=[seen], init_weights=shipped / "model.keras")
    for start, shipped_weight in zip(seen.weights, exported.get_weights(), strict=True):
        np.testing.assert_array_equal(start, shipped_weight)
    continued = json.loads((tmp_path / "continued" / "config.json").read_text())
    assert continued["init_weights"] == str(shipped / "model.keras")
    state = json.loads((tmp_path / "continued" / "training_state.json").read_text())
    assert state["optimizer_iterations"] == 1
    train(short, "fnet", tmp_path / "continued", epochs=1, resume=True, progress=False,
          data=quick_data)  # a resume keeps the record of where the weights came from
    continued = json.loads((tmp_path / "continued" / "config.json").read_text())
    assert continued["init_weights"] == str(shipped / "model.keras")

    # Shipping the continued run over the folder it came from: the history, the config
    # and the card tell both stages; the weights are the continued run's.
    first_config = json.loads((shipped / "config.json").read_text())
    first, second = read_history(shipped), read_history(tmp_path / "continued")
    export_run(tmp_path / "continued", shipped, wall_seconds=30.0, continued_from=shipped)
    merged = read_history(shipped)
    assert merged["epoch"] == list(range(len(first["epoch"]) + len(second["epoch"])))
    assert merged["val_loss"] == first["val_loss"] + second["val_loss"]
    config = json.loads((shipped / "config.json").read_text())
    assert config["continued_from"] == first_config and "init_weights" not in config
    # The first stage's profile: the one both stages started from, not the continued one.
    assert first_stage_profile(shipped) == Profile.from_dict(first_config["profile"])
    assert first_stage_profile(shipped) != run_profile(shipped)
    assert first_stage_profile(tmp_path / "continued") == run_profile(tmp_path / "continued")
    card = (shipped / "MODEL_CARD.md").read_text()
    assert "### Stage 1: quick profile" in card and "### Stage 2:" in card
    assert card.count("wall time: 1.5 min") == 1 and card.count("wall time: 0.5 min") == 1
    assert card.count("best epoch") == 1
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.models.load_model(shipped / "model.keras")(inputs)),
        keras.ops.convert_to_numpy(
            keras.models.load_model(tmp_path / "continued" / "best.keras")(inputs)),
        atol=1e-6,
    )
    other = tmp_path / "other-kind"
    shutil.copytree(shipped, other)
    (other / "config.json").write_text(json.dumps({**first_config, "kind": "transformer"}))
    with pytest.raises(PianoaccError, match="other-kind: its model is not the one"):
        export_run(tmp_path / "continued", tmp_path / "x", continued_from=other)
    assert not (tmp_path / "x").exists()
    with pytest.raises(PianoaccError, match="model.keras: its model is not the one"):
        train(short, "transformer", tmp_path / "other", epochs=1, progress=False,
              data=quick_data, init_weights=shipped / "model.keras")


def test_one_device_uses_the_default_strategy():
    strategy = pick_strategy()
    assert strategy.name == "default" and strategy.replicas == 1
    with strategy.scope():
        pass


# --------------------------------------------------------------------------- crash-safe resume


class StepLosses(keras.callbacks.Callback):
    """Records the running epoch loss after every optimizer step, by global step."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: dict[int, float] = {}

    def on_train_begin(self, logs=None):
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.losses[self.step] = float(logs["loss"])


class CrashAtStep(keras.callbacks.Callback):
    """Stops training with an error right after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.crash_step = step

    def on_train_begin(self, logs=None):
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step == self.crash_step:
            raise RuntimeError(f"crash after step {self.step}")


RESUMED = small_quick(train_segments=64, validation_segments=32)
"""4 optimizer steps per epoch (64 segments, batches of 16): step 3 falls in epoch 0,
step 6 in the middle of epoch 1."""


@pytest.fixture(scope="module")
def reference_run(quick_data, tmp_path_factory) -> tuple[Path, dict[int, float]]:
    """Three epochs of ``RESUMED`` without a stop, a step checkpoint every 3 steps."""
    out = tmp_path_factory.mktemp("reference") / "run"
    steps = StepLosses()
    train(RESUMED, "fnet", out, epochs=3, progress=False, data=quick_data,
          checkpoint_steps=3, callbacks=[steps])
    return out, steps.losses


def test_crashes_mid_epoch_and_mid_commit_resume_to_the_same_run(
    reference_run, quick_data, tmp_path, monkeypatch
):
    """A run killed after step 7 (its last step checkpoint: step 6, in epoch 1), then
    killed again between writing epoch 1's weights and history and committing its state,
    and resumed, ends with the per-step losses, history and weights of a run that never
    stopped: it replays the batches of epoch 1 after step 6 in order, with the optimizer
    state, learning rate and running metric sums of step 6."""
    from pianoacc_utils.training import checkpoints

    reference, reference_losses = reference_run
    out = tmp_path / "run"
    steps = StepLosses()
    with pytest.raises(RuntimeError, match="after step 7"):
        train(RESUMED, "fnet", out, epochs=3, progress=False, data=quick_data,
              checkpoint_steps=3, callbacks=[steps, CrashAtStep(7)])
    state = json.loads((out / "training_state.json").read_text())
    assert state["epochs_done"] == 1 and state["step"]["optimizer_iterations"] == 6
    assert state["step"]["epoch"] == 1 and state["step"]["batches_done"] == 2
    assert (out / "step.keras").is_file() and len(read_history(out)["epoch"]) == 1

    real_write_state = checkpoints.write_state

    def crash_before_epoch_1_commit(out_dir, new_state):
        if new_state.get("epochs_done") == 2 and not new_state.get("step"):
            raise RuntimeError("crash before the state is written")
        real_write_state(out_dir, new_state)

    monkeypatch.setattr(checkpoints, "write_state", crash_before_epoch_1_commit)
    with pytest.raises(RuntimeError, match="before the state"):
        train(RESUMED, "fnet", out, epochs=2, resume=True, progress=False, data=quick_data,
              checkpoint_steps=3, callbacks=[steps])
    monkeypatch.undo()
    # Weights and history of epoch 1 were written, its state was not: still step 6.
    assert (out / "last.8.partial.keras").is_file()
    assert read_history(out)["epoch"] == [0, 1]
    assert json.loads((out / "training_state.json").read_text()) == state

    resumed = StepLosses()
    history = train(RESUMED, "fnet", out, epochs=2, resume=True, progress=False,
                    data=quick_data, checkpoint_steps=3, callbacks=[resumed])
    assert sorted(resumed.losses) == list(range(7, 13))
    assert not list(out.glob("*.partial.keras")) and not (out / "step.keras").exists()
    for step, loss in {**steps.losses, **resumed.losses}.items():
        assert loss == pytest.approx(reference_losses[step], rel=1e-5), step
    expected = read_history(reference)
    assert history["epoch"] == expected["epoch"] == [0, 1, 2]
    for column, values in expected.items():
        np.testing.assert_allclose(history[column], values, rtol=1e-5, err_msg=column)
    state = json.loads((out / "training_state.json").read_text())
    assert state["epochs_done"] == 3 and state["optimizer_iterations"] == 12
    model, twin = (keras.models.load_model(run / "last.keras") for run in (out, reference))
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 12
    for weight, expected_weight in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(weight, expected_weight, rtol=1e-4, atol=1e-6)


def test_recover_finishes_or_undoes_an_interrupted_commit(tmp_path):
    from pianoacc_utils.training import recover

    for name in ("last.keras", "step.keras", "last.8.partial.keras", "best.8.partial.keras",
                 "last.12.partial.keras"):
        (tmp_path / name).write_text(name)
    done = recover(tmp_path, {"optimizer_iterations": 8, "best_iterations": 8, "step": None})
    assert (tmp_path / "last.keras").read_text() == "last.8.partial.keras"
    assert (tmp_path / "best.keras").read_text() == "best.8.partial.keras"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "last.keras"]
    assert len(done) == 4
    (tmp_path / "history.csv").write_text("epoch,loss\n0,3.0\n1,2.5\n2,2.25\n")
    recover(tmp_path, {"epochs_done": 2, "optimizer_iterations": 8})
    assert read_history(tmp_path) == {"epoch": [0, 1], "loss": [3.0, 2.5]}
    (tmp_path / "step.6.partial.keras").write_text("step 6")
    recover(tmp_path, {"epochs_done": 2, "optimizer_iterations": 8, "step": {"optimizer_iterations": 6}})
    assert (tmp_path / "step.keras").read_text() == "step 6"


def test_segment_batches_resume_inside_an_epoch(quick_data):
    split = load_split(quick_data, "validation")
    config = QUICK.model_config("fnet")
    options = {"batch_size": 8, "shuffle": True, "seed": 3, "harmony_dropout": 0.5}
    whole = SegmentBatches(split, config, epoch=2, **options)
    rest = SegmentBatches(split, config, epoch=2, start_batch=3, **options)
    assert len(rest) == len(whole) - 3 and rest.batches_per_epoch == len(whole)
    for index in range(len(rest)):
        inputs, target = rest[index]
        expected_inputs, expected_target = whole[index + 3]
        np.testing.assert_array_equal(target, expected_target)
        np.testing.assert_array_equal(inputs["harmony"], expected_inputs["harmony"])
    rest.on_epoch_end()
    assert len(rest) == len(whole) and rest.epoch == 3
    with pytest.raises(PianoaccError, match="an epoch has"):
        SegmentBatches(split, config, start_batch=len(whole), **options)


def test_a_damaged_checkpoint_is_one_clear_error(tmp_path, capsys):
    import zipfile

    from pianoacc_utils.training.checkpoints import load_checkpoint

    profile = small_quick()
    out = fake_run(tmp_path / "run", profile, "fnet", 1)  # last.keras holds garbage
    with pytest.raises(PianoaccError, match=r"last\.keras: not a readable Keras checkpoint.*"
                       r"delete the folder .*fresh --out"):
        train(profile, "fnet", out, resume=True, progress=False)
    with zipfile.ZipFile(out / "last.keras", "w") as archive:  # complete zip, broken weights
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"not hdf5")
        archive.writestr("metadata.json", "{}")
    with pytest.raises(PianoaccError, match="last.keras: not a readable Keras checkpoint"):
        load_checkpoint(out / "last.keras")
    data = (out / "last.keras").read_bytes()
    cli_run = fake_run(tmp_path / "cli", QUICK, "fnet", 1)
    (cli_run / "last.keras").write_bytes(data[: len(data) // 2])  # truncated
    code = cli.main(["train", "--model", "fnet", "--profile", "quick", "--out", str(cli_run),
                     "--resume"])
    error = capsys.readouterr().err.strip()
    assert code == 1 and len(error.splitlines()) == 1
    assert "last.keras: not a readable Keras checkpoint" in error and "fresh --out" in error


def test_resuming_with_other_settings_names_each_difference(tmp_path):
    from pianoacc_utils.training import settings_difference

    profile = small_quick()
    out = fake_run(tmp_path / "run", profile, "fnet", 1)
    wider = dataclasses.replace(profile, model=dataclasses.replace(profile.model, hidden_dim=128))
    with pytest.raises(PianoaccError, match=r"model\.hidden_dim: 64 in the run, 128 now"):
        train(wider, "fnet", out, resume=True, progress=False)
    later = dataclasses.replace(profile.train, epochs=9, checkpoint_steps=50, learning_rate=1e-3)
    assert settings_difference(profile.to_dict(), dataclasses.replace(profile, train=later)) == [
        "train.learning_rate: 0.002 in the run, 0.001 now"
    ]  # more epochs and other checkpoint steps may go on from a run


# --------------------------------------------------------------------------- command line


def test_cli_train_passes_its_options(monkeypatch, tmp_path, capsys):
    from pianoacc_utils import training

    calls = []

    def fake_train(profile, kind, out_dir, epochs=None, resume=False, progress=True, data=None,
                   checkpoint_steps=None, loss_check=False):
        calls.append(
            (profile, kind, Path(out_dir), epochs, resume, data, checkpoint_steps, loss_check)
        )
        (Path(out_dir) / "best.keras").write_bytes(b"weights")
        return {"epoch": [0], "loss": [4.0], "val_loss": [3.5]}

    monkeypatch.setattr(training, "train", fake_train)
    code = cli.main(
        ["train", "--model", "transformer", "--profile", "quick", "--out", str(tmp_path),
         "--epochs", "2", "--resume", "--data", str(tmp_path / "data"), "--checkpoint-steps", "50",
         "--loss-check"]
    )
    assert code == 0
    assert calls == [("quick", "transformer", tmp_path, 2, True, tmp_path / "data", 50, True)]
    printed = capsys.readouterr().out
    assert str(tmp_path / "best.keras") in printed  # the files the run wrote, and only those
    assert "last.keras" not in printed


def test_cli_train_reports_a_missing_run_in_one_line(tmp_path, capsys):
    code = cli.main(
        ["train", "--model", "fnet", "--profile", "quick", "--out", str(tmp_path), "--resume"]
    )
    assert code == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "cannot resume" in error
    with pytest.raises(SystemExit):
        cli.main(["train", "--model", "lstm", "--profile", "quick", "--out", str(tmp_path)])


# --------------------------------------------------------------------------- reusing runs, speed


def fake_run(out: Path, profile: Profile, kind: str, epochs_done: int) -> Path:
    """A run folder as :func:`train` leaves it (files only, no real model)."""
    from pianoacc_utils.common import write_json

    out.mkdir(parents=True)
    write_json(out / "config.json", {"kind": kind, "profile": profile.to_dict()})
    write_json(out / "training_state.json", {"epochs_done": epochs_done})
    (out / "last.keras").write_bytes(b"checkpoint")
    rows = "".join(
        f"{epoch},{3.0 - epoch / 10},{3.2 - epoch / 10}\n" for epoch in range(epochs_done)
    )
    (out / "history.csv").write_text("epoch,loss,val_loss\n" + rows)
    return out


def test_train_or_reuse_trains_resumes_or_reads_back(monkeypatch, tmp_path):
    from pianoacc_utils import training
    from pianoacc_utils.training import loop

    calls = []

    def fake_train(profile, kind, out_dir, epochs=None, resume=False, progress=True, data=None):
        calls.append((profile.name, kind, Path(out_dir), resume))
        return {"epoch": [0]}

    monkeypatch.setattr(loop, "train", fake_train)  # train_or_reuse calls the loop module's train
    profile = small_quick()
    epochs = profile.train.epochs

    assert training.train_or_reuse(profile, "fnet", tmp_path / "new") == {"epoch": [0]}
    assert calls.pop() == ("quick", "fnet", tmp_path / "new", False)

    unfinished = fake_run(tmp_path / "unfinished", profile, "fnet", epochs - 1)
    assert not training.is_finished_run(unfinished, profile, "fnet")
    training.train_or_reuse(profile, "fnet", unfinished)
    assert calls.pop() == ("quick", "fnet", unfinished, True)

    finished = fake_run(tmp_path / "finished", profile, "transformer", epochs)
    assert training.is_finished_run(finished, profile, "transformer")
    assert not training.is_finished_run(finished, profile, "fnet")
    assert not training.is_finished_run(finished, QUICK, "transformer")  # other settings
    assert training.run_profile(finished) == profile
    history = training.train_or_reuse(profile, "transformer", finished)
    assert calls == []
    assert history["epoch"] == list(range(epochs))
    assert history["loss"][-1] == pytest.approx(3.0 - (epochs - 1) / 10)

    with pytest.raises(PianoaccError, match="holds a transformer/quick run that is not a fnet run"):
        training.train_or_reuse(profile, "fnet", finished)
    with pytest.raises(PianoaccError, match="not a transformer run of the current 'quick'"):
        training.train_or_reuse(QUICK, "transformer", finished)
    with pytest.raises(PianoaccError, match="not a training run folder"):
        training.run_profile(tmp_path / "new")
    assert calls == []
