"""Small shared pieces: the project exception, where caches live, JSON for configs.

Kept free of any pipeline stage so that every stage may import it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class PianoaccError(Exception):
    """An error a user can act on; the CLI prints its message as one line."""


def project_root() -> Path | None:
    """The repository root when the package runs from a checkout, else ``None``."""
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
    """A frozen config dataclass as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_hash(config: Any) -> str:
    """A short stable fingerprint of a config, used to name cache folders."""
    text = json.dumps(config_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_json(path: str | Path, payload: Any) -> None:
    """Write JSON atomically: a crash never leaves a half-written file."""
    write_atomic(Path(path), (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file in the same folder."""
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
