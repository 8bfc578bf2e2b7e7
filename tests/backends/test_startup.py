"""Backend start-up: TensorFlow runs its oneDNN kernels on every processor."""

from __future__ import annotations

import os
import subprocess
import sys

import keras

from pianoacc_utils.backends import startup

ONEDNN_STATE = (
    "import pianoacc_utils\n"
    "from tensorflow.python.util import _pywrap_util_port as port\n"
    "print(port.IsMklEnabled())\n"
)
"""Whether TensorFlow's oneDNN kernels are on, after the package set the backend up."""


def test_onednn_is_on_unless_the_user_set_it(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    startup.choose_backend([])
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == startup.ONEDNN == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    startup.choose_backend([])
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_a_process_that_imports_the_package_runs_tensorflow_with_onednn():
    """TensorFlow reads the setting when it loads: a process without it, where the package
    loads first, has oneDNN on, whether or not TensorFlow would have turned it on here."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environment["KERAS_BACKEND"] = "tensorflow"
    done = subprocess.run([sys.executable, "-c", ONEDNN_STATE], env=environment,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "True"
    assert done.stderr.strip() == ""  # and says nothing about it


def test_the_tests_run_tensorflow_as_the_package_sets_it_up():
    """``tests/conftest.py`` sets oneDNN before any test module loads TensorFlow (some import
    Keras before the package), as the package would."""
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == startup.ONEDNN
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.util import _pywrap_util_port as port

        assert port.IsMklEnabled()
