"""A traced Python loop compiled for the Keras backend in use.

:class:`~pianoacc_utils.generation.CachedDecoder` writes its sampling loop once, in Keras
ops; :func:`compile_loop` compiles it for the backend: XLA through
``tf.function(jit_compile=True)`` under TensorFlow, ``jax.jit`` under JAX (with the
variables passed in and the sampler's seed state passed out, as JAX's pure functions
need, and the traced program of each shape kept on disk by
:func:`~pianoacc_utils.backends.exported.kept_program`), and the loop as it is, run
eagerly, under torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from pianoacc_utils.backends.exported import kept_program


def compile_loop(
    loop: Callable,
    model: keras.Model,
    sampler: Any,
    description: dict[str, Any],
    new_program: Callable[[], None],
) -> Callable:
    """``loop`` (a function of tensors that runs ``model`` and ``sampler``, a keras-hub
    sampler) compiled for the Keras backend in use, called with the same arguments as
    NumPy arrays (under JAX they go to the program as they are: ``jnp.asarray`` would
    compile a program of its own for every new shape).

    ``description``: what, besides the arguments' shapes, shapes the traced program (the
    model's configuration, the sampling settings, the dtype policy), part of the key of
    a kept program under JAX; ``new_program`` is called whenever JAX makes the program
    of a new shape (traced or loaded)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return _on_tensors(tf.function(loop, jit_compile=True, reduce_retracing=True))
    if backend == "jax":
        return _jax_loop(loop, model, sampler, description, new_program)
    return _on_tensors(loop)  # torch: eager loop


def _on_tensors(loop: Callable) -> Callable:
    """``loop`` called with its NumPy arguments converted to the backend's tensors."""

    def run(*arguments: Any) -> Any:
        return loop(*(keras.ops.convert_to_tensor(argument) for argument in arguments))

    return run


def _jax_loop(
    loop: Callable,
    model: keras.Model,
    sampler: Any,
    description: dict[str, Any],
    new_program: Callable[[], None],
) -> Callable:
    """``loop`` under ``jax.jit``, stateless: the variables of ``sampler`` and ``model``
    go in as arguments, the sampler's new seed state comes out and is written back."""
    import jax

    programs = {}

    @jax.jit
    def compiled(state: Any, *arguments: Any) -> tuple[Any, list[Any]]:
        sampler_vars, trainable, non_trainable = state
        mapping = itertools.chain(
            zip(sampler.variables, sampler_vars),
            zip(model.trainable_variables, trainable),
            zip(model.non_trainable_variables, non_trainable),
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            out = loop(*arguments)
        new_sampler_vars = [scope.get_current_value(v) for v in sampler.variables]
        return out, new_sampler_vars

    def run(*arguments: Any) -> Any:
        state = (
            [v.value for v in sampler.variables],
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )
        arguments = (state, *arguments)
        shapes = tuple((tuple(a.shape), str(a.dtype)) for a in jax.tree.leaves(arguments))
        if shapes not in programs:  # a new shape: a kept program, or traced now
            new_program()
            programs[shapes] = kept_program(compiled, arguments, description)
        out, new_vars = programs[shapes](*arguments)
        # The seed state goes back through NumPy: a device array written into the
        # variable would change the arguments' placement, and with it the kept
        # program's signature (a second compile).
        for variable, value in zip(sampler.variables, new_vars):
            variable.assign(np.asarray(value))
        return out

    return run
