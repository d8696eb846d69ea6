"""Code version and parameters stamped into every file the project writes."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+<hash of the package's source>``: changes whenever the code does."""
    try:
        base = version("spy-assets")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        base = "0+unknown"
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{base}+{digest.hexdigest()[:12]}"
