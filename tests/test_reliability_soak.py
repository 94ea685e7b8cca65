"""A 30-second soak of the served bento (``bench/soak.sh 30``): no unexpected status, no socket error, RSS flat.

The script drives wrk with a Lua script mixing known, unknown and malformed/hostile product ids against the
session's ``bentoml serve`` of the packaged bento, and writes a machine-readable summary that this test
checks. The 10-minute version is ``make soak``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import serving
from tests.fixtures.prefect_server import REPO_ROOT

SOAK_SECONDS = 30


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (CI installs it: .ci/run)")
@pytest.mark.timeout(300)
def test_thirty_second_soak_loses_nothing(bento_server: serving.BentoServer, tmp_path: Path):
    env = dict(
        os.environ,
        SOAK_URL=bento_server.url,
        SERVER_PID=str(bento_server.proc.pid),
        OUT_DIR=str(tmp_path),
    )
    run = subprocess.run(
        ["bash", "bench/soak.sh", str(SOAK_SECONDS)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    summary = json.loads((tmp_path / "summary.json").read_text())
    print(run.stdout)

    assert summary["seconds"] >= SOAK_SECONDS - 1, report
    assert summary["unexpected_statuses"] == {}, report
    assert sum(summary["socket_errors"].values()) == 0, report
    statuses = summary["statuses"]
    for code in ("200", "400", "404", "415"):  # every kind of body was sent and answered as it should be
        assert statuses.get(code, 0) > 0, report
    assert statuses["200"] > statuses["404"] > statuses["400"], report  # the 60/25/5/10 mix
    assert summary["requests"] > 30 * SOAK_SECONDS, report  # a real load, not a trickle
    assert summary["rss_kb"]["start"] > 100_000  # measured the server and its workers, not a shell
    assert summary["rss_growth_pct"] < 10.0, report
    assert summary["passed"] and run.returncode == 0, report
