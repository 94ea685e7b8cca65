"""The README's BentoML command lines work as written, in a fresh shell in the checkout, after the pipeline.

The lines are read from the README itself and run with the session's environment, which — like a shell after
`make run` — names no ``BENTOML_HOME`` the project chose: BentoML uses whatever home the environment gives
it (here the session's, on a developer's machine its default ``~/bentoml``), the same one the packaging flow
built the session's bento in. Neither the Makefile nor the code moves the tools' homes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from service.contract import PREDICT_ROUTE, PREDICTION_FIELDS
from tests.fixtures.prefect_server import REPO_ROOT, stop_group
from tests.fixtures.serving import serve_bento

README = REPO_ROOT / "README.md"


def _readme_line(prefix: str) -> list[str]:
    """The README's command line starting with ``prefix`` (its trailing comment dropped), as argv."""
    for line in README.read_text().splitlines():
        if line.startswith(prefix):
            return shlex.split(line, comments=True)
    raise AssertionError(f"the README has no line starting with {prefix!r}")


def _argv(words: list[str]) -> list[str]:
    """``words`` with ``uv`` resolved the way a shell would (or to the environment's own uv)."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    return [uv if w == "uv" else w for w in words]


def _shell_env() -> dict[str, str]:
    """The session's environment as a fresh shell in the checkout would have it."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_neither_make_nor_the_code_moves_the_tools_homes():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert not re.search(r"^\s*export\s+(BENTOML_HOME|PREFECT_HOME)\b", makefile, re.M)
    for package in ("features", "training", "service", "flows"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"environ.*\b(BENTOML_HOME|PREFECT_HOME)\b", text), path


def test_bentoml_list_shows_the_pipelines_bento(packaged_bento: str):
    words = _readme_line("uv run bentoml list")
    assert words == ["uv", "run", "bentoml", "list"]
    run = subprocess.run(
        _argv(words), cwd=REPO_ROOT, env=_shell_env(), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert packaged_bento in run.stdout, run.stdout[-2000:]


def test_bentoml_serve_latest_answers_the_predict_call(
    packaged_bento: str, known_product: str, session_dir: Path
):
    words = _readme_line("uv run bentoml serve tamales-forecast:latest")
    assert words == ["uv", "run", "bentoml", "serve", "tamales-forecast:latest"]
    # Host and port through BentoML's own environment variables: the line stays as written.
    log = session_dir / "readme-serve.log"
    server = serve_bento(packaged_bento, _shell_env(), log, command=_argv(words), cwd=REPO_ROOT)
    try:
        response = httpx.post(f"{server.url}{PREDICT_ROUTE}", json={"productid": known_product}, timeout=10.0)
        assert response.status_code == 200, response.text
        body = response.json()
        assert tuple(body) == PREDICTION_FIELDS and body["productid"] == known_product
        assert body["lower"] <= body["prediction"] <= body["upper"]
    finally:
        stop_group(server.proc)
