"""Pieces every stage shares: the error a user can act on, where the checkout and the
caches are, configs as JSON and their fingerprints, and atomic file writes.

It imports nothing from the package, so that every pipeline stage may import it. The
tuned constants live in :mod:`pianoacc_utils.defaults`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator


class PianoaccError(Exception):
    """An error a user can act on (a missing file, a bad option, an unknown profile);
    the command line prints its message as one line instead of a traceback."""


def project_root() -> Path | None:
    """The repository root when the package runs from a checkout (the folder holding
    ``pyproject.toml``), else ``None`` (an installed copy)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    """Folder for derived caches (prepared token arrays): ``PIANOACC_CACHE``,
    else ``cache/`` in the checkout (git-ignored), else ``~/.cache/pianoacc``."""
    if os.environ.get("PIANOACC_CACHE"):
        return Path(os.environ["PIANOACC_CACHE"])
    root = project_root()
    return root / "cache" if root else Path.home() / ".cache" / "pianoacc"


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict (tuples become lists), as stored in
    ``config.json`` files."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_hash(config: Any) -> str:
    """A short stable fingerprint of a config (the first 12 hex digits of the SHA-256 of
    its sorted JSON), used to name cache folders: a changed config never reads a cache
    written for another."""
    text = json.dumps(config_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cpuinfo(field: str) -> str:
    """The first value of ``field`` in ``/proc/cpuinfo`` ("" when absent or not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == field:
                return value.strip()
    except OSError:
        pass
    return ""


def processor_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), for records of speed."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


def processor_flags() -> frozenset[str]:
    """The processor's instruction-set flags (``/proc/cpuinfo``; empty elsewhere): whether
    it has, for instance, bfloat16 matrix units (``amx_bf16``)."""
    return frozenset(_cpuinfo("flags").split())


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON with sorted keys (stable diffs for committed
    results), atomically (:func:`write_atomic`)."""
    write_atomic(Path(path), (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file in the same folder, then rename it:
    a reader sees the old file or the new one, and a crash never leaves half a file.
    Creates the parent folders; the file gets the usual mode (0666 less the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes: two
    processes that build the same cached folder take turns instead of writing it at once.
    Where ``fcntl`` is missing (Windows) it does not lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def worker_processes(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` forked processes for per-song work (reading MIDI files,
    NumPy), which never calls Keras or JAX. Once JAX has started its threads, every fork
    prints JAX's warning that forking a multithreaded process may deadlock; the children
    here run none of JAX's code, so the warning is silenced for the pool's forks only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        with ProcessPoolExecutor(workers) as pool:
            yield pool


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native libraries write to the process's stderr (file descriptor 2) to
    the null device while the block runs: TensorFlow's CUDA and absl start-up lines
    ignore its log level, and would otherwise open every command's and notebook's output.
    Python exceptions raised in the block still propagate (and are printed after it)."""
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def check_outputs(
    outputs: dict[str, Path | None], inputs: dict[str, Path | None] | None = None
) -> None:
    """Refuse, before any work starts, an output file that would overwrite an input or
    another output (paths compared after resolving links), that names a folder, or whose
    folder cannot be made or written. Keys name the option (``-o``, ``--wav``) or the input."""
    taken: dict[Path, str] = {}
    for what, path in (inputs or {}).items():
        if path is not None:
            taken[Path(path).resolve()] = what
    for what, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in taken:
            raise PianoaccError(
                f"{path}: {what} would overwrite the {taken[resolved]}; choose another file"
            )
        if resolved.is_dir():
            raise PianoaccError(f"{path}: {what} names a folder; give a file name")
        folder = resolved.parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise PianoaccError(f"{path}: {what} cannot be written ({folder} is not a writable folder)")
        taken[resolved] = what
