"""Benchmark of the data plane (polars engine): ingest and the features flow's core at several raw volumes.

    uv run python bench/features.py [--rows 10000000 50000000 100000000] [--repeat 3] [--workdir DIR]

Each stage runs in a fresh child process so its peak RSS is its own. Reports medians over ``--repeat`` runs
(this machine is noisy) of wall time, rows/s and peak RSS for: ingest (validate + checksum + copy into a
local raw bucket) and features (read the latest deliveries, clean, net, build features, split, publish).

Deliveries: the generator (``features.synth``) writes the smallest size; a larger one repeats each ERP
regional file of it ``k`` times (byte for byte, streamed), so every raw row is a real generated fragment and
the series and months stay those of the base delivery (totals are k times larger). Work files go under
``--workdir`` (default: a temporary folder, removed at the end).
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
    return {"stage": stage, "seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "rows": rows}


def _peak_rss_mb() -> float:
    """This process's peak RSS. Linux keeps ``ru_maxrss`` across fork + exec, so a child would report its
    parent's peak (e.g. the generator's) if that was higher; ``VmHWM`` starts afresh with the new program."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(stage: str, delivery: Path, lake: Path) -> dict:
    env = os.environ | {
        "TAMALES_RAW_URL": str(lake / "raw"),
        "TAMALES_PROCESSED_URL": str(lake / "processed"),
        "TAMALES_STATE_DIR": str(lake / "state"),
        "TAMALES_FEATURE_ENGINE": "polars",
    }
    out = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--delivery", str(delivery)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def replicate(base: Path, out: Path, times: int) -> None:
    """``base`` with every ERP data file repeated ``times`` times (other files copied as they are)."""
    from features.raw_layout import classify

    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).as_posix()
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        raw_file = classify(rel)
        if raw_file is None or raw_file.kind != "erp_sales" or times == 1:
            shutil.copyfile(path, target)
            continue
        with open(target, "wb") as sink:
            for _ in range(times):
                with open(path, "rb") as source:
                    shutil.copyfileobj(source, sink, 16 * 2**20)


def _raw_rows_and_bytes(delivery: Path) -> tuple[int, int]:
    from features.raw_layout import classify

    rows = size = 0
    for path in (p for p in delivery.rglob("*") if p.is_file()):
        if classify(path.relative_to(delivery).as_posix()) is not None:
            size += path.stat().st_size
            with open(path, "rb") as handle:
                rows += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(2**24), b""))
    return rows, size


def _summary(label: str, runs: list[dict], rows: int) -> str:
    secs = [r["seconds"] for r in runs]
    med = statistics.median(secs)
    rss = max(r["peak_rss_mb"] for r in runs)
    return f"{label:<22}{med:>10.2f}{min(secs):>8.2f}{max(secs):>8.2f}{rows / med:>16,.0f}{rss:>13,.0f}"


def main() -> None:
    """Generate the base delivery once, derive the larger ones, then time each stage per size."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000], help="target ERP raw rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--base-rows", type=int, default=10_000_000, help="rows generated (larger sizes repeat them)"
    )
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
    work.mkdir(parents=True, exist_ok=True)
    sizes = sorted(args.rows)
    base = work / "delivery-base"
    probe = generate(work / "probe", products=12, months=20, fragments=10)
    base_rows = min(sizes[0], args.base_rows)
    fragments = max(1, round(base_rows / (probe.rows["erp_sales"] / 10)))
    shutil.rmtree(work / "probe", ignore_errors=True)
    marker = work / "delivery-base.json"  # a base of the same fragments from an earlier run is reused
    if marker.exists() and json.loads(marker.read_text())["fragments"] == fragments and base.exists():
        erp_rows = json.loads(marker.read_text())["erp_rows"]
    else:
        t0 = time.perf_counter()
        erp_rows = generate(base, products=12, months=20, fragments=fragments).rows["erp_sales"]
        print(f"generated {erp_rows:,} ERP rows (fragments={fragments}) in {time.perf_counter() - t0:.1f} s")
        marker.write_text(json.dumps({"fragments": fragments, "erp_rows": erp_rows}))

    header = f"{'rows / stage':<22}{'median s':>10}{'min s':>8}{'max s':>8}{'rows/s (median)':>16}{'peak RSS MB':>13}"
    lines = [header]
    for size in sizes:
        times = max(1, round(size / erp_rows))
        delivery = base if times == 1 else work / f"delivery-{size}"
        if not delivery.exists():
            replicate(base, delivery, times)
        rows, size_bytes = _raw_rows_and_bytes(delivery)
        print(
            f"delivery of {rows:,} raw rows ({size_bytes / 1e9:.2f} GB of CSV, ERP files x{times})",
            flush=True,
        )
        results: dict[str, list[dict]] = {"ingest": [], "features": []}
        for i in range(args.repeat):
            lake = work / f"lake-{i}"
            for stage in ("ingest", "features"):
                results[stage].append(_run_child(stage, delivery, lake))
                print(f"  run {i + 1} {stage}: {results[stage][-1]}", flush=True)
            shutil.rmtree(lake, ignore_errors=True)
        lines += [_summary(f"{rows / 1e6:,.1f} M {stage}", runs, rows) for stage, runs in results.items()]
        if delivery != base:
            shutil.rmtree(delivery, ignore_errors=True)
    print("\n" + "\n".join(lines))
    sizes_arg = " ".join(str(s) for s in sizes)
    print(
        f"\nruns: {args.repeat}; command: uv run python bench/features.py --rows {sizes_arg} --repeat {args.repeat}"
    )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
