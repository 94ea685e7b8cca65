"""Benchmark of the data plane: ingest and the features flow's core on ~10 M generated raw rows.

    uv run python bench/features.py [--rows 10000000] [--repeat 3] [--workdir DIR]

Each stage runs in a fresh child process so its peak RSS is its own. Reports medians over ``--repeat`` runs
(this machine is noisy) of wall time, rows/s and peak RSS for: ingest (validate + copy into a local raw bucket)
and features (read latest deliveries, clean, net, build features, split, publish the version).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stage(stage: str, delivery: str) -> dict:
    """Run one stage in this (child) process and return its timing."""
    sys.path.insert(0, str(ROOT))
    from features import dataset
    from features.ingest import ingest_delivery
    from features.settings import get_settings

    settings = get_settings()
    start = time.perf_counter()
    if stage == "ingest":
        ingest_delivery(delivery, settings.raw_url, settings)
        rows = None
    else:
        inputs = dataset.resolve_inputs(settings)
        features, report = dataset.build_dataset(inputs, settings)
        dataset.publish_version(features, report, settings)
        rows = sum(v for k, v in report["rules"].items() if k.endswith(".rows_read"))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"stage": stage, "seconds": seconds, "peak_rss_mb": peak_mb, "rows": rows}


def _run_child(stage: str, delivery: Path, lake: Path) -> dict:
    env = os.environ | {
        "TAMALES_RAW_URL": str(lake / "raw"),
        "TAMALES_PROCESSED_URL": str(lake / "processed"),
        "TAMALES_STATE_DIR": str(lake / "state"),
    }
    out = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--delivery", str(delivery)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Generate the data once, then time each stage ``--repeat`` times from a clean lake."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="target ERP raw rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--stage", choices=["ingest", "features"], help=argparse.SUPPRESS)
    parser.add_argument("--delivery", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(_stage(args.stage, args.delivery)))
        return

    sys.path.insert(0, str(ROOT))
    from features.synth import generate

    work = args.workdir or Path(tempfile.mkdtemp(prefix="tamales-bench-"))
    delivery = work / "delivery"
    probe = generate(work / "probe", products=12, months=20, fragments=10)
    fragments = max(1, round(args.rows / (probe.rows["erp_sales"] / 10)))
    t0 = time.perf_counter()
    summary = generate(delivery, products=12, months=20, fragments=fragments)
    gen_s = time.perf_counter() - t0
    total_rows = sum(summary.rows.values())
    print(
        f"generated {total_rows:,} raw rows ({summary.bytes / 1e6:,.0f} MB, fragments={fragments}) in {gen_s:.1f} s"
    )

    results: dict[str, list[dict]] = {"ingest": [], "features": []}
    for i in range(args.repeat):
        lake = work / f"lake-{i}"
        for stage in ("ingest", "features"):
            results[stage].append(_run_child(stage, delivery, lake))
        shutil.rmtree(lake, ignore_errors=True)

    print(
        f"\n{'stage':<10}{'median s':>10}{'min s':>8}{'max s':>8}{'rows/s (median)':>18}{'peak RSS MB':>13}"
    )
    for stage, runs in results.items():
        secs = [r["seconds"] for r in runs]
        med = statistics.median(secs)
        rss = max(r["peak_rss_mb"] for r in runs)
        print(
            f"{stage:<10}{med:>10.2f}{min(secs):>8.2f}{max(secs):>8.2f}{total_rows / med:>18,.0f}{rss:>13,.0f}"
        )
    print(
        f"\nraw rows: {total_rows:,}; runs: {args.repeat}; command: uv run python bench/features.py --rows {args.rows}"
    )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
