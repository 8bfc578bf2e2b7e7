"""Loading a saved model without paying for weights that the file replaces.

``keras.models.load_model`` builds the model from its saved configuration, which draws
every weight from its initializer, and then overwrites every weight with the file's.
Under JAX each random initializer of a new shape is a compiled program: loading one of
the shipped models compiled dozens of them, most of the model phase of a first
``pianoacc accompany`` (3.3 s on 2 Intel Xeon cores, 5.3 s on 2 AMD EPYC cores:
``benchmarks/results/accompany_wait.json``). Within
:func:`weights_from_file`, a model that supports it
(:meth:`~pianoacc_utils.models.AccompanimentModel.build_from_config`) creates its weights
as zeros made by NumPy and handed to the backend as they are (:func:`host_zeros`: no
compiled program), for the file to fill.

Only the zeros' values differ from a plain ``load_model``: the weights that the file
holds are the same, and Keras refuses a file that lacks one of the model's weights.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from typing import Any

import keras
import numpy as np

_FROM_FILE = contextvars.ContextVar("pianoacc_weights_from_file", default=False)


@contextlib.contextmanager
def weights_from_file() -> Iterator[None]:
    """Within the block, models built from a saved configuration get placeholder weights
    (:func:`placeholder_weights`): wrap ``keras.models.load_model`` in it, never the
    building of a model that is to be trained from its initial weights."""
    token = _FROM_FILE.set(True)
    try:
        yield
    finally:
        _FROM_FILE.reset(token)


def loading_weights_from_file() -> bool:
    """Whether the caller runs within :func:`weights_from_file`."""
    return _FROM_FILE.get()


def host_zeros(shape: Any, dtype: Any = None) -> Any:
    """A Keras initializer: zeros of ``shape`` made by NumPy, as a JAX array under JAX
    (``jax.device_put``, which compiles nothing, where ``jnp.zeros`` and ``jnp.asarray``
    compile a program per shape), else as a NumPy array."""
    zeros = np.zeros(tuple(shape), keras.backend.standardize_dtype(dtype))
    if keras.config.backend() == "jax":
        import jax

        return jax.device_put(zeros)
    return zeros


@contextlib.contextmanager
def placeholder_weights(layer: keras.layers.Layer) -> Iterator[None]:
    """Build ``layer``'s weights within the block (calling the sub-layers' ``build``);
    they are created as :func:`host_zeros` instead of from their initializers.

    Keras creates the variables of a stateless scope without values and gives them
    their initializers' values when the scope ends; before it ends, each new variable's
    initializer (Keras's ``_initializer`` attribute) is replaced by :func:`host_zeros`.
    Should a Keras version keep it elsewhere, the initializers run as usual: slower,
    the same weights once the file's are loaded."""
    with keras.StatelessScope():
        yield
        _replace_initializers(layer.variables)


def _replace_initializers(variables: Iterable[Any]) -> None:
    for variable in variables:
        if getattr(variable, "_initializer", None) is not None:
            variable._initializer = host_zeros
