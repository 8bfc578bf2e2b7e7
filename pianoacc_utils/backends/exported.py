"""The compiled decoding loop kept on disk between processes (JAX).

Before JAX can compile the decoding loop of :class:`~pianoacc_utils.generation.CachedDecoder`
it traces it: Keras runs the model's and the sampler's Python code once to record the
program, which takes longer than decoding a window. JAX's persistent compilation cache
(set up when the package loads: :mod:`~pianoacc_utils.backends.startup`) saves the
compiling, not the tracing. So the traced program is also kept, serialized with
``jax.export``, in ``<cache>/decoders``: a later process deserializes it instead of
tracing, and its compiled form then comes from JAX's cache. The weights are arguments
of the program, not part of it.

A kept program is found by a key over everything that shapes it: the argument shapes
and dtypes, the caller's description (model configuration, sampling settings, dtype
policy), the versions of JAX, Keras and keras-hub, and the source of this package
(any edit of it makes new programs). Whatever goes wrong while exporting or reading a
kept program, the loop is traced as usual.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_hub

from pianoacc_utils.common import cache_dir, write_atomic

PACKAGE = Path(__file__).resolve().parents[1]


@functools.cache
def package_fingerprint() -> str:
    """sha256 over the source of every module of the package (read once per process)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def program_key(arguments: Any, description: dict[str, Any]) -> str:
    """The key of a kept program: the arguments' tree, shapes and dtypes, ``description``,
    the library versions and :func:`package_fingerprint`."""
    import jax

    leaves, tree = jax.tree.flatten(arguments)
    parts = {
        "tree": str(tree),
        "leaves": [(tuple(leaf.shape), str(leaf.dtype)) for leaf in leaves],
        "description": description,
        "versions": [jax.__version__, keras.__version__, keras_hub.__version__],
        "platform": jax.default_backend(),
        "package": package_fingerprint(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def kept_program(
    jitted: Callable, arguments: tuple, description: dict[str, Any], folder: Path | None = None
) -> Callable:
    """``jitted`` (a ``jax.jit`` function) for arguments shaped like ``arguments``: the
    program kept in ``folder`` (default ``<cache>/decoders``) when there is one, else
    traced now, kept, and returned; ``jitted`` itself when that fails."""
    import jax
    from jax import export

    folder = folder or cache_dir() / "decoders"
    try:
        path = folder / f"{program_key(arguments, description)}.jaxexport"
        if path.is_file():
            program = export.deserialize(bytearray(path.read_bytes()))
        else:
            program = export.export(jitted)(*arguments)
            write_atomic(path, bytes(program.serialize()))
    except Exception:  # noqa: BLE001  (a program that cannot be kept is traced each time)
        return jitted
    return jax.jit(program.call)
