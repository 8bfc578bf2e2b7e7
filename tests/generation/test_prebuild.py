"""``pianoacc prebuild`` (``generation.prebuild``): under JAX it keeps every decoding
program a melody's windows need, so that accompanying a melody afterwards, in a decoder
of its own, traces no new one; under TensorFlow it keeps nothing and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import tiny
from tiny import TINY

from pianoacc_utils.cli import main

REPO = Path(__file__).resolve().parents[2]

JAX_SCRIPT = """
import sys
from pathlib import Path

import keras

from pianoacc_utils.data.notes import Note
from pianoacc_utils.generation import CachedDecoder, WindowConfig, accompany
from pianoacc_utils.generation.prebuild import prebuild_programs
from pianoacc_utils.generation.sampling import SamplingConfig
from pianoacc_utils.models import ModelConfig, build_model

kept = Path(sys.argv[1]) / "decoders"
keras.utils.set_random_seed(3)
model = build_model(ModelConfig(kind="transformer", **{tiny}))
sampling = SamplingConfig(seed=0)
window = WindowConfig(bars=2, overlap_bars=1)
made = prebuild_programs(model, CachedDecoder(model, sampling), window, candidates=2)
assert made["widths"] == 2 and made["programs"] == 2, made
programs = sorted(p.name for p in kept.iterdir())
assert len(programs) == 2, programs

# A melody whose windows widen: quarter notes, then sixteenths (32 steps a bar).
bars = 8
notes = [Note(start, start + 8, 60 + start % 12, 90) for start in range(0, 4 * 32, 8)]
notes += [Note(start, start + 2, 62 + start % 10, 90) for start in range(4 * 32, bars * 32, 2)]
decoder = CachedDecoder(model, sampling)
(result,) = accompany(model, [(notes, [bar * 32 for bar in range(bars)], bars * 32)], sampling,
                      window, decoder=decoder, candidates=2)
loaded = sum(timing.compiled for timing in decoder.timings)
assert loaded == 2, [timing.compiled for timing in decoder.timings]  # both widths met
assert sorted(p.name for p in kept.iterdir()) == programs, "a program the prebuild missed"
print("prebuild ok")
"""


@pytest.mark.slow
def test_prebuilt_programs_serve_every_window_of_a_later_melody(tmp_path):
    env = {**os.environ, **tiny.JAX_TINY_ENV, "PIANOACC_CACHE": str(tmp_path),
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax")}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT.format(tiny=TINY), str(tmp_path)], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "prebuild ok" in result.stdout


def test_prebuild_keeps_nothing_under_tensorflow(tmp_path, monkeypatch, capsys):
    """The test process runs TensorFlow (``conftest``), whose compiled loop is not kept."""
    monkeypatch.setenv("PIANOACC_CACHE", str(tmp_path))
    assert keras.config.backend() == "tensorflow"
    assert main(["prebuild"]) == 0
    assert "nothing to keep under tensorflow" in capsys.readouterr().out
    assert not (tmp_path / "decoders").exists()
