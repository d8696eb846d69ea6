"""Code versions and the provenance of a stored partition: what code, source, parameters and
upstream data versions made it. No Dagster here: the command line reads the instance and hands
the plain values to :func:`describe`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_PACKAGE = Path(__file__).parent

#: Source files that cannot change the rows of a derived dataset: commands, the UI, operations,
#: and the code that only fetches or lands raw data (a change there reaches derived data through
#: the raw partitions' data versions instead).
_NOT_DERIVING_CODE = (
    "cli.py",
    "config.py",
    "errors.py",
    "landing.py",
    "provenance.py",
    "redaction.py",
    "reports.py",
    "retention.py",
    "dashboard/",
    "defs/",
    "live/",
    "sources/",
)
#: The analytics modules each derived dataset is computed with; the other analytics modules do
#: not change it (an upstream dataset's change reaches it through that dataset's data version).
_ANALYTICS_MODULES = {
    "features": ("features.py", "greeks.py", "indicators.py"),
    "scan_events": ("scanner.py",),
    "training_data": ("training.py",),
}


def _base_version() -> str:
    try:
        return version("spy-assets")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def _digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+<hash of the package's source>``: changes whenever the code does."""
    return f"{_base_version()}+{_digest(_PACKAGE.rglob('*.py'))}"


def dataset_sources(name: str) -> list[Path]:
    """The source files that compute a derived dataset (``spy/features``), relative to the
    package: every module that shapes derived rows, and of the analytics modules only its own."""
    kind = name.rsplit("/", 1)[-1]
    own = _ANALYTICS_MODULES.get(kind)

    def shapes_it(rel: str) -> bool:
        if rel.startswith(_NOT_DERIVING_CODE):
            return False
        if rel.startswith("analytics/") and own is not None:
            return rel.removeprefix("analytics/") in own or rel.endswith("__init__.py")
        return True

    paths = (p.relative_to(_PACKAGE) for p in _PACKAGE.rglob("*.py"))
    return sorted(p for p in paths if shapes_it(p.as_posix()))


@cache
def dataset_code_version(name: str) -> str:
    """The code version of one derived dataset: the package version and a hash of its
    :func:`dataset_sources`. It changes only when that code does, so after a change the UI marks
    exactly the datasets it affects (and, through data versions, their downstream) as stale, not
    the whole graph."""
    return f"{_base_version()}+{_digest(_PACKAGE / p for p in dataset_sources(name))}"


@dataclass(frozen=True)
class PartitionProvenance:
    """What made one stored partition: the file's own stamp and the Dagster materialization."""

    dataset: str
    session: str
    path: str
    #: Stamped into the Parquet file by storage: code_version, source, params.
    file: Mapping[str, object]
    run_id: str | None = None
    materialized_at: str | None = None
    code_version: str | None = None
    data_version: str | None = None
    #: Upstream asset → the data version of it that this partition was built from.
    inputs: Mapping[str, str] = field(default_factory=dict)


def describe(p: PartitionProvenance) -> str:
    """A readable block for the command line."""
    lines = [
        f"{p.dataset}  session {p.session}",
        f"  file              {p.path}",
        f"  source            {p.file.get('source', '?')}",
        f"  code version      {p.code_version or '?'} (asset)",
        f"                    {p.file.get('code_version', '?')} (package, in the file)",
    ]
    params = p.file.get("params") or {}
    if isinstance(params, Mapping) and params:
        lines.append("  parameters        " + ", ".join(f"{k}={v}" for k, v in params.items()))
    else:
        lines.append("  parameters        (none)")
    if p.run_id is None:
        lines.append("  materialization   none recorded in this Dagster instance")
        return "\n".join(lines)
    lines += [
        f"  materialized      {p.materialized_at}  run {p.run_id}",
        f"  data version      {p.data_version or '?'}",
    ]
    if p.inputs:
        lines.append("  built from        (upstream asset: its data version)")
        width = max(len(k) for k in p.inputs)
        lines += [f"    {k:<{width}}  {v}" for k, v in sorted(p.inputs.items())]
    else:
        lines.append("  built from        the source (no upstream asset)")
    return "\n".join(lines)
