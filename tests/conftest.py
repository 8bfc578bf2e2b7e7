"""Shared test setup: where POP909 is, a private cache, headless plotting, quiet TensorFlow.

Variables that libraries read when they are first imported (Keras backend, TensorFlow
log level and oneDNN kernels, Matplotlib backend) are set when this file loads, before any test module
imports them; the data locations are set by the session fixture :func:`test_environment`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN on, as pianoacc_utils.backends.startup.ONEDNN sets it when the package loads: here
# because some test modules import Keras, and so TensorFlow, before the package.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("PIANOACC_CPU_PRECISION", "float32")  # the same numbers on any processor
os.environ["MPLBACKEND"] = "Agg"

settings.register_profile(
    "pianoacc", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("pianoacc")
"""Property tests: no per-example deadline (two shared CPU cores make timings noisy)."""

SONG_IDS = ("001", "002", "003", "004", "005", "186")
"""Real songs most tests look at: the first five and the showcase song 186 (irregular bars)."""


def pop909_location() -> Path | None:
    """``POP909_DIR`` if set, else ``../shared/pop909`` beside the checkout, else ``data/POP909``.

    ``None`` when none of them holds the dataset: the first test that needs it then
    downloads it to ``data/POP909`` (see :func:`pianoacc_utils.data.find_pop909_dir`).
    """
    env = os.environ.get("POP909_DIR")
    if env:
        return Path(env).expanduser().resolve()
    for candidate in (REPO.parent / "shared" / "pop909", REPO / "data" / "POP909"):
        if (candidate / "001").is_dir():
            return candidate.resolve()
    return None


def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache of this test session, shared by its xdist workers: what one worker
    prepares (POP909 arrays, under a lock) or compiles (JAX) the others reuse."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "cache"  # beside popen-gw0, -gw1
        folder.mkdir(exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session", autouse=True)
def test_environment(tmp_path_factory: pytest.TempPathFactory):
    """Point the package at POP909 (absolute path) and at a cache private to this test session."""
    with pytest.MonkeyPatch.context() as patch:
        location = pop909_location()
        if location is not None:
            patch.setenv("POP909_DIR", str(location))
        patch.setenv("PIANOACC_CACHE", str(session_cache(tmp_path_factory)))
        patch.setenv("MPLBACKEND", "Agg")
        patch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        patch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
        yield


@pytest.fixture(scope="session")
def pop909_dir(test_environment) -> Path:
    """The folder holding the POP909 song folders 001/ ... 909/."""
    from pianoacc_utils.data import find_pop909_dir

    return find_pop909_dir()


@pytest.fixture(scope="session")
def songs(pop909_dir: Path) -> dict:
    """A few real songs (:data:`SONG_IDS`), loaded once per session, by song id."""
    from pianoacc_utils.data import load_song

    return {song_id: load_song(song_id, root=pop909_dir) for song_id in SONG_IDS}


@pytest.fixture
def evaluate_config(monkeypatch):
    """``run(args)``: ``pianoacc evaluate *args`` stopped where the evaluation would start,
    returning the ``EvaluationConfig`` the command built from its options."""
    from pianoacc_utils import cli
    from pianoacc_utils.common import PianoaccError

    seen = {}

    def fake_report(checkpoints, config, melody_paths, progress=False):
        seen["config"] = config
        raise PianoaccError("stop here")

    monkeypatch.setattr(cli.evaluate_command, "evaluation_report", fake_report)

    def run(args):
        seen.clear()
        assert cli.main(["evaluate", *args]) == 1  # the fake report's error
        return seen["config"]

    return run
