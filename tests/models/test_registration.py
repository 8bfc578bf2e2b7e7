"""``import pianoacc_utils`` registers the model's Keras classes: a shipped model loads with
plain Keras after it, in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

KINDS = ("fnet", "transformer")
LOAD = """
import pianoacc_utils, keras
for kind in {kinds!r}:
    model = keras.saving.load_model(f"pretrained/{{kind}}/model.keras", compile=False)
    print(type(model).__module__, type(model).__name__, model.config.kind)
"""


def test_shipped_models_load_with_plain_keras_after_importing_the_package():
    run = subprocess.run(
        [sys.executable, "-c", LOAD.format(kinds=KINDS)], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert [line.split() for line in run.stdout.splitlines()] == [
        ["pianoacc_utils.models.seq2seq", "AccompanimentModel", kind] for kind in KINDS
    ]
    assert run.stderr == ""  # no start-up noise from TensorFlow


def test_without_the_package_keras_cannot_rebuild_the_model():
    """The test above can fail: the classes come from the package, not from Keras."""
    run = subprocess.run(
        [sys.executable, "-c", "import keras; keras.saving.load_model('pretrained/fnet/model.keras')"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert run.returncode != 0
