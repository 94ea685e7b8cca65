"""Bucket access for local folders and ``gs://`` URLs through fsspec (gcsfs), with atomic publishing.

A "URL" is either a local path (the embedded default bucket) or ``gs://bucket/prefix``. Callers never branch
on the scheme: they ask for ``filesystem(url)`` and use fsspec's API.

Atomicity: a local file is written to a temporary sibling and ``os.replace``-d; a GCS object only becomes
visible when its upload completes, so a single object write is already atomic. A directory of outputs is
published by writing every file and then a ``_SUCCESS`` marker last (see ``publish_files``); readers only
trust directories that carry the marker.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from features.settings import Settings, get_settings
from features.telemetry import quiet_tools

SUCCESS_MARKER = "_SUCCESS"


def is_gcs(url: str) -> bool:
    """True for ``gs://`` (or ``gcs://``) URLs."""
    return url.startswith(("gs://", "gcs://"))


def join(url: str, *parts: str) -> str:
    """Join path parts onto a bucket URL with forward slashes (works for local paths and gs://)."""
    cleaned = [p.strip("/") for p in parts if p]
    if is_gcs(url):
        return posixpath.join(url.rstrip("/"), *cleaned)
    return str(Path(url, *cleaned))


def filesystem(url: str, settings: Settings | None = None) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem serving ``url``: gcsfs (ADC, or the emulator endpoint from settings) or local."""
    if not is_gcs(url):
        return LocalFileSystem(auto_mkdir=True)
    settings = settings or get_settings()
    quiet_tools()  # GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT before gcsfs is used, whatever the entry point
    import gcsfs  # imported lazily: the local default must not pay for it

    kwargs: dict = {}
    if settings.gcs_endpoint:
        kwargs["endpoint_url"] = settings.gcs_endpoint
    if settings.gcs_anonymous:
        kwargs["token"] = "anon"
    elif settings.gcs_project:
        kwargs["project"] = settings.gcs_project
    # Listings must reflect our own writes immediately (a re-run checks what is already there).
    return gcsfs.GCSFileSystem(use_listings_cache=False, **kwargs)


def fs_path(url: str) -> str:
    """The path of ``url`` as its filesystem expects it (``bucket/key`` for GCS, absolute for local)."""
    if is_gcs(url):
        return url.split("://", 1)[1]
    return str(Path(url).resolve())


def write_bytes_atomic(url: str, data: bytes, settings: Settings | None = None) -> None:
    """Write ``data`` to ``url`` so that readers see either the old content or the new, never a partial file."""
    if is_gcs(url):
        fs = filesystem(url, settings)
        with fs.open(fs_path(url), "wb") as handle:
            handle.write(data)
        return
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_bytes(url: str, settings: Settings | None = None) -> bytes:
    """Read a whole object/file."""
    fs = filesystem(url, settings)
    with fs.open(fs_path(url), "rb") as handle:
        return handle.read()


def exists(url: str, settings: Settings | None = None) -> bool:
    """Whether the file or directory at ``url`` exists."""
    return filesystem(url, settings).exists(fs_path(url))


def publish_files(dest_url: str, files: Mapping[str, bytes], settings: Settings | None = None) -> None:
    """Publish a directory of files at ``dest_url`` as one unit, replacing what was there.

    Local: everything is written into a hidden sibling directory which is then swapped in with renames, so a
    crash leaves either the previous directory or the new one. GCS: objects are written, stale objects
    removed, and the ``_SUCCESS`` marker written last (it is removed first, so a crash leaves no marker).
    """
    if is_gcs(dest_url):
        fs = filesystem(dest_url, settings)
        root = fs_path(dest_url)
        marker = posixpath.join(root, SUCCESS_MARKER)
        if fs.exists(marker):
            fs.rm(marker)
        wanted = {posixpath.join(root, rel) for rel in files}
        for rel, data in sorted(files.items()):
            with fs.open(posixpath.join(root, rel), "wb") as handle:
                handle.write(data)
        if fs.exists(root):
            stale = [p for p in fs.find(root) if p not in wanted and p != marker]
            if stale:
                fs.rm(stale)
        with fs.open(marker, "wb") as handle:
            handle.write(b"")
        return

    dest = Path(dest_url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted_publish(dest)
    staging = dest.with_name(f".{dest.name}.staging-{uuid.uuid4().hex}")
    retired = dest.with_name(f".{dest.name}.retired-{uuid.uuid4().hex}")
    try:
        for rel, data in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (staging / SUCCESS_MARKER).write_bytes(b"")
        if dest.exists():
            os.rename(dest, retired)
        os.rename(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def _recover_interrupted_publish(dest: Path) -> None:
    """Undo what a killed ``publish_files`` left: put back a retired directory that was never replaced, and
    remove stale staging/retired siblings (publishing one destination is serialised by its flow)."""
    retired = sorted(dest.parent.glob(f".{dest.name}.retired-*"), key=lambda p: p.stat().st_mtime)
    if retired and not dest.exists():
        os.rename(retired.pop(), dest)
    for stale in [*retired, *dest.parent.glob(f".{dest.name}.staging-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def is_published(dir_url: str, settings: Settings | None = None) -> bool:
    """True when the directory at ``dir_url`` was completely published (carries ``_SUCCESS``)."""
    return exists(join(dir_url, SUCCESS_MARKER), settings)
