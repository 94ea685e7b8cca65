"""Atomic publishing of a local directory, including recovery from a publish that was killed midway."""

from __future__ import annotations

import os
from pathlib import Path

from features import storage


def test_publish_replaces_the_directory_as_a_unit(tmp_path: Path):
    dest = tmp_path / "v1"
    storage.publish_files(str(dest), {"a/x.bin": b"1", "b.bin": b"2"})
    storage.publish_files(str(dest), {"a/x.bin": b"3"})
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "_SUCCESS",
        "a/x.bin",
    ]
    assert (dest / "a/x.bin").read_bytes() == b"3" and storage.is_published(str(dest))
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]


def test_a_publish_killed_between_its_renames_is_recovered_by_the_next_one(tmp_path: Path):
    dest = tmp_path / "v1"
    storage.publish_files(str(dest), {"x.bin": b"old"})
    # State a SIGKILL leaves after the old directory was retired but before staging was renamed in.
    os.rename(dest, tmp_path / ".v1.retired-dead")
    (tmp_path / ".v1.staging-dead").mkdir()
    storage._recover_interrupted_publish(dest)
    assert (dest / "x.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]
    storage.publish_files(str(dest), {"x.bin": b"new"})
    assert (dest / "x.bin").read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["v1"]
