"""Guards for the patches this service applies to BentoML: a patch that cannot rot silently.

Each patch replaces or relies on one library function, written against one exact release. ``guard`` lets it
apply only when the installed library is that release *and* the function's source is byte-for-byte the one
the patch was written against (sha256 of ``inspect.getsource``); otherwise it logs a WARNING naming what
changed and the patch is skipped, leaving the library's own behaviour. After a BentoML upgrade: re-read the
new function, port the patch, update ``BENTOML_VERSION`` and the hashes (``source_sha256`` prints them).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("bentoml.tamales.patching")

BENTOML_VERSION = "1.4.40"
# bentoml._internal.server.http.traffic.TimeoutMiddleware.__call__ (replaced by service.runtime)
TIMEOUT_CALL_SHA256 = "fd8b9e3da28ed2b44cfd508d641617e049fcd4986138197ce7bb227332505896"  # pragma: allowlist secret (a source hash)
# bentoml._internal.server.http_app.log_exception (its message and args are what the log filter rewrites)
LOG_EXCEPTION_SHA256 = "8e37ab2b4433dff1b39b8e3e31e86f2cf6706294a2749f688a6b8c0e12b9ff70"  # pragma: allowlist secret (a source hash)
# bentoml._internal.server.http.instruments.RunnerTrafficMetricsMiddleware.__call__ (subclassed by
# service.routing, which rewrites the scope's path before it)
METRICS_CALL_SHA256 = "b7dc25ae0208d7b27864271735f917f20fe7712a3d76e9afefca4271f5b458d9"  # pragma: allowlist secret (a source hash)

# uvicorn (BentoML's server): service.http_guard subclasses the protocol ``auto`` designates and replaces its
# ``send_400_response``; one hash per protocol class.
UVICORN_VERSION = "0.54.0"
SEND_400_SHA256 = {
    "HttpToolsProtocol": "ae5a4a3782b646fdd2d0ec5cfc28814fda9b6e3464bf6f45c58839982319bd0c",  # pragma: allowlist secret
    "H11Protocol": "56937b748fc59d921491a9ee3c8e24ad1525bd13fa2d7296c5f9b3ebb7b9be38",  # pragma: allowlist secret
}


def source_sha256(function: Callable[..., Any]) -> str:
    """sha256 of the function's source text."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def installed_version(distribution: str = "bentoml") -> str | None:
    """The installed version of ``distribution`` (None if it is not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def guard(
    what: str,
    original: Callable[..., Any],
    expected_sha256: str,
    *,
    expected_version: str = BENTOML_VERSION,
    distribution: str = "bentoml",
) -> bool:
    """True if the patch ``what`` may apply to ``original``; else a WARNING and False."""
    version = installed_version(distribution)
    if version != expected_version:
        logger.warning(
            "not applying %s: written for %s %s, found %s", what, distribution, expected_version, version
        )
        return False
    try:
        actual = source_sha256(original)
    except (OSError, TypeError) as exc:  # no source available (compiled, or not a function)
        logger.warning("not applying %s: cannot read the source of %r: %s", what, original, exc)
        return False
    if actual != expected_sha256:
        logger.warning(
            "not applying %s: %s changed (source sha256 %s, expected %s)",
            what,
            getattr(original, "__qualname__", original),
            actual,
            expected_sha256,
        )
        return False
    return True
