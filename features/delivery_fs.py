"""Listing and reading a delivery tree without ever following a symbolic link.

A delivery is a tree of regular files. Locally the tree is walked without following links (a link is listed
as an entry, never descended into), and a file is opened one path component at a time relative to the
delivery root (``openat`` with ``O_NOFOLLOW``): neither a link nor a folder swapped for a link after the
listing can make ingest read outside the delivery. What is opened must be a regular file: a directory, a FIFO
(reading one would block) or a device is refused without reading it. GCS has no links: listing and reading go
through gcsfs unchanged.
"""

from __future__ import annotations

import errno
import os
import stat

from features import storage
from features.settings import Settings

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnreadableEntry(Exception):
    """An entry of a delivery that is not read (a link, not a regular file, unreadable); ``reason`` says why.

    The reason never holds the entry's content or a link's target.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def list_entries(source_url: str, settings: Settings | None = None) -> tuple[list[str], list[str]]:
    """Every non-folder entry under ``source_url`` (relative, sorted) and the subset that are symbolic links.

    Raises FileNotFoundError when ``source_url`` is not a folder.
    """
    if storage.is_gcs(source_url):
        fs = storage.filesystem(source_url, settings)
        root = storage.fs_path(source_url).rstrip("/")
        if not fs.isdir(root):
            raise FileNotFoundError(f"delivery folder not found: {source_url}")
        return sorted(p[len(root) :].lstrip("/") for p in fs.find(root, detail=False)), []
    root = storage.fs_path(source_url)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"delivery folder not found: {source_url}")
    entries, links, folders = [], [], [""]
    while folders:
        folder = folders.pop()
        with os.scandir(os.path.join(root, folder)) as scan:
            for entry in scan:
                rel = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_dir(follow_symlinks=False):
                    folders.append(rel)
                    continue
                entries.append(rel)
                if entry.is_symlink():
                    links.append(rel)
    return sorted(entries), sorted(links)


def read_entry(source_url: str, relpath: str, settings: Settings | None = None) -> bytes:
    """The bytes of the regular file at ``relpath`` of the delivery; raises ``UnreadableEntry`` otherwise."""
    if storage.is_gcs(source_url):
        fs = storage.filesystem(source_url, settings)
        with fs.open(storage.fs_path(storage.join(source_url, relpath)), "rb") as handle:
            return handle.read()
    *folders, name = relpath.split("/")
    dir_fd = os.open(storage.fs_path(source_url), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for folder in folders:
            try:
                parent_fd, dir_fd = dir_fd, os.open(folder, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                raise UnreadableEntry(_reason(exc, "a folder on its path")) from None
            os.close(parent_fd)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise UnreadableEntry(_reason(exc, "the file")) from None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableEntry(f"not a regular file ({_file_type(mode)}): not read")
        try:
            return handle.read()
        except OSError as exc:
            raise UnreadableEntry(_reason(exc, "the file")) from None


def _reason(exc: OSError, what: str) -> str:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a link
        return f"{what} is a symbolic link: not followed"
    if exc.errno == errno.ENOTDIR:  # O_DIRECTORY | O_NOFOLLOW on a link (or on a file) where a folder was
        return f"{what} is no longer a plain folder (a symbolic link?): not followed"
    return f"unreadable: {exc.strerror or type(exc).__name__}"


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special"
