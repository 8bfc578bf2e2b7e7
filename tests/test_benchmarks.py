"""The speed benchmarks and what they read: the GPU epoch script's smoke path, the
benchmark melody, ``pianoacc accompany --timings``, the backend the command picks,
and the JAX model loading it relies on."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny

import pianoacc_utils
from pianoacc_utils import cli
from pianoacc_utils.data import load_melody
from pianoacc_utils.generation import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from accompany_wait import pianoacc_command, write_melody


def test_the_wait_benchmark_runs_only_the_commands_a_checkout_has(tmp_path):
    old = tmp_path / "old"
    (old / "pianoacc_utils").mkdir(parents=True)
    (old / "pianoacc_utils" / "cli.py").write_text('@command("accompany", "melody -> MIDI")\n')
    assert pianoacc_command(old, "prebuild") is None  # a checkout from before set-up prebuilt
    command = pianoacc_command(old, "accompany", "in.mid")
    assert command[0] == sys.executable and command[-3:] == [str(old), "accompany", "in.mid"]
    assert Path(pianoacc_command(None, "prebuild")[0]).name == "pianoacc"


def test_gpu_epoch_tiny_run_writes_every_field(tmp_path):
    env = {**os.environ, **tiny.JAX_TINY_ENV}
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_epoch.py"), "--tiny", "--out", str(tmp_path),
         "--precisions", "float32", "--warmup", "1", "--steps", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_epoch_tiny_cpu.json").read_text())
    assert result["backend"] == "jax" and result["device"] == "tiny_cpu"
    assert result["steps_per_epoch"] == math.ceil(result["train_segments"] / result["batch_size"])
    (row,) = result["rows"]
    assert row["precision"] == "float32" and row["steps"] == 2
    assert 0 < row["step_seconds_min"] <= row["step_seconds_median"] <= row["step_seconds_max"]
    tokens = result["batch_size"] * row["accompaniment_tokens"]
    assert row["tokens_per_second"] == pytest.approx(tokens / row["step_seconds_median"], rel=1e-3)
    assert row["epoch_seconds"] == pytest.approx(
        result["steps_per_epoch"] * row["step_seconds_median"], abs=0.05
    )
    assert set(result["machine"]["processor"]["flags"]) >= {"amx_bf16", "avx512_bf16"}


def test_benchmark_melody_is_120_bars_of_4_4(tmp_path):
    melody = load_melody(write_melody(tmp_path / "melody.mid"))
    assert melody.num_bars == 120
    assert [(s.numerator, s.denominator) for s in melody.midi.time_signature_changes] == [(4, 4)]
    assert len(melody.notes) > 120  # notes in every bar, not one long note


def test_the_command_picks_jax_for_accompany_only():
    jax = importlib.util.find_spec("jax") is not None  # an optional dependency
    expected = "jax" if jax else "tensorflow"
    assert pianoacc_utils.backends.default_backend(["/venv/bin/pianoacc", "accompany"]) == expected
    for argv in (["/venv/bin/pianoacc", "evaluate"], ["pytest", "accompany"], ["pianoacc"]):
        assert pianoacc_utils.backends.default_backend(argv) == "tensorflow"


def test_accompany_reports_its_timings(tmp_path, capsys):
    import keras

    from pianoacc_utils.models import ModelConfig, build_model

    config = ModelConfig(
        kind="fnet", melody_length=32, accompaniment_length=64, hidden_dim=16, num_heads=2,
        intermediate_dim=32, encoder_layers=1, decoder_layers=1, dropout=0.0,
    )
    keras.utils.set_random_seed(0)
    build_model(config).save(tmp_path / "model.keras")
    melody = write_melody(tmp_path / "melody.mid", bars=12)
    out = tmp_path / "out.mid"
    assert cli.main(["accompany", str(melody), "-o", str(out), "--checkpoint",
                     str(tmp_path / "model.keras"), "--timings"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("timings: ")]
    report = json.loads(lines[0][len("timings: "):])
    assert report["backend"] == keras.config.backend()
    phases = ("start_up", "melody", "model", "decoding", "writing")
    assert [name for name in report if name not in ("backend", "total")] == list(phases)
    decoding = report["decoding"]
    assert decoding["windows"] >= 2 and 0 < decoding["compiling"] <= decoding["wall"]
    assert report["total"]["wall"] >= sum(report[name]["wall"] for name in phases) - 0.01
    assert out.is_file()


JAX_LOAD = """
import sys
logits_path = sys.argv[1]
sys.argv = ["/venv/bin/pianoacc", "accompany"]  # what the command's process loads
import pianoacc_utils
import keras, numpy as np
from pianoacc_utils.data import load_melody
from pianoacc_utils.generation import load_checkpoint
from pianoacc_utils.harmony import chord_vector, learned_chords
melody = load_melody(sys.stdin.readline().strip())
chords = learned_chords(melody.notes, melody.grid.bar_starts, melody.end_step)
assert chords and all(chord_vector(c.label).sum() >= 3 for c in chords)
model, window = load_checkpoint("transformer")
assert model.built and window.bars == 8
unused = set(sys.modules) & {"mir_eval", "music21", "scipy.sparse", "tensorflow",
                             *pianoacc_utils.backends.KERAS_EXTRAS}
assert not unused, unused
rng = np.random.default_rng(0)
batch = {"melody": rng.integers(3, 300, (2, 24)).astype("int32"),
         "decoder_input": rng.integers(3, 300, (2, 40)).astype("int32")}
logits = np.asarray(model(batch))
assert logits.shape == (2, 40, model.config.vocabulary_size) and np.isfinite(logits).all()
np.save(logits_path, logits)
print("jax load ok", keras.config.backend())
"""


@pytest.mark.slow
def test_the_accompany_process_loads_a_model_under_jax_without_unused_modules(tmp_path):
    """Under JAX (a fresh process, its own compilation cache), the process of ``pianoacc
    accompany`` estimates chords and loads the model without importing what it does not
    use: TensorFlow (keras-hub's text tools), mir_eval (the harmoniser's labels come
    parsed with its parameters), music21 (the key is estimated without it), SciPy's
    sparse solvers (deferred), and the packages of Keras's and keras-hub's extras
    (plots, data frames, notebooks, scikit-learn wrappers, downloads); the loaded
    model's logits equal TensorFlow's for the same checkpoint."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax")}
    melody = write_melody(tmp_path / "melody.mid", bars=8)
    run = subprocess.run([sys.executable, "-c", JAX_LOAD, str(tmp_path / "jax.npy")], cwd=REPO,
                         env=env, input=f"{melody}\n",
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "jax load ok jax" in run.stdout
    model, _ = load_checkpoint("transformer")  # this process's backend: TensorFlow
    rng = np.random.default_rng(0)
    batch = {"melody": rng.integers(3, 300, (2, 24)).astype("int32"),
             "decoder_input": rng.integers(3, 300, (2, 40)).astype("int32")}
    expected = np.asarray(model(batch))
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), expected, atol=1e-4)


def test_suite_time_clones_beside_shared_and_reads_pytest_summary(tmp_path):
    """benchmarks/suite_time.py times a clone laid out as CI's (POP909 in ../shared) and
    records pytest's summary line, whether the run was quiet (-q) or not."""
    import suite_time

    assert suite_time.pytest_summary(
        "....\n==== 401 passed, 4 warnings in 638.44s (0:10:38) ====\n"
    ) == "401 passed, 4 warnings in 638.44s (0:10:38)"
    assert suite_time.pytest_summary(
        "F.\n1 failed, 527 passed, 4 warnings in 340.33s (0:05:40)\n"
    ) == "1 failed, 527 passed, 4 warnings in 340.33s (0:05:40)"
    assert suite_time.pytest_summary("make: *** [Makefile:23: setup] Error 1\n") == ""
    shared = tmp_path / "shared"
    (shared / "pop909").mkdir(parents=True)
    clone = suite_time.fresh_clone("HEAD", tmp_path / "scratch", shared)
    assert (clone / ".ci" / "run").is_file()
    assert (clone.parent / "shared" / "pop909").resolve() == (shared / "pop909").resolve()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                          text=True, check=True).stdout
    assert head == subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                  text=True, check=True).stdout


def test_onednn_ratios_come_from_the_rows():
    """benchmarks/onednn.py's summary is each model's step without oneDNN over the step with
    it, and the committed file's summary is what its own rows give."""
    import onednn

    rows = [{"profile": "quick", "kind": "fnet", "onednn": "0", "step_seconds_median": 0.3},
            {"profile": "quick", "kind": "fnet", "onednn": "1", "step_seconds_median": 0.2}]
    assert onednn.ratios(rows) == {"quick/fnet": 1.5}
    committed = json.loads((BENCHMARKS / "results" / "onednn.json").read_text())
    assert committed["without_over_with"] == onednn.ratios(committed["rows"])
    assert {row["onednn"] for row in committed["rows"]} == set(onednn.SETTINGS)
