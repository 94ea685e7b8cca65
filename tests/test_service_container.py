"""The bento's container image (podman): built from the session's bento, started, answering the predict call.

Skipped only when podman is absent (CI installs it via .ci/run). The image's base is a local stand-in for
python:3.11-slim built by scripts/make_base_image.sh (no container registry is reachable here).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.fixtures import serving


@pytest.mark.skipif(
    shutil.which("podman") is None, reason="podman is not installed (CI installs it via .ci/run)"
)
def test_the_container_answers_the_predict_route(packaged_bento, features_run):
    result = subprocess.run(
        ["bash", "scripts/test_container.sh", packaged_bento],
        cwd=serving.REPO_ROOT,
        env={**os.environ, "REMOVE_IMAGE": "1"},  # the build cache stays; the session's image goes
        capture_output=True,
        text=True,
        timeout=1500,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "OK: " in result.stdout and "-> 200 " in result.stdout, output[-3000:]
