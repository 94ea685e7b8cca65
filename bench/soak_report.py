"""Helpers of ``bench/soak.sh``: the product ids to mix in, and the soak's report from its raw measurements.

    python -m bench.soak_report ids [--limit N]          # known product ids, one per line (feature store)
    python -m bench.soak_report report DIR               # table + DIR/summary.json from DIR/minutes.jsonl

``minutes.jsonl`` holds one JSON object per measured minute, written by the soak's wrk Lua script (requests,
duration, latency percentiles, statuses, socket errors) plus the server's RSS after that minute. ``meta.json``
holds the run's parameters and the RSS before and after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path


def known_ids(limit: int) -> list[str]:
    """Up to ``limit`` product ids of the feature store (sorted), as the service will find them."""
    from features.feature_store import get_feature_store

    return sorted(get_feature_store().latest_rows())[:limit]


def summarize(folder: Path) -> dict:
    """The soak's summary: totals, statuses, per-minute figures, RSS growth and the verdict."""
    meta = json.loads((folder / "meta.json").read_text())
    minutes = [json.loads(line) for line in (folder / "minutes.jsonl").read_text().splitlines() if line]
    expected = {int(s) for s in meta["expected_statuses"]}
    statuses: Counter[int] = Counter()
    socket_errors: Counter[str] = Counter()
    for minute in minutes:
        statuses.update({int(k): v for k, v in minute["statuses"].items()})
        socket_errors.update(minute["socket_errors"])
    requests = sum(m["requests"] for m in minutes)
    seconds = sum(m["duration_us"] for m in minutes) / 1e6
    rss_start = meta["rss_kb_after_warmup"]
    rss_end = minutes[-1]["rss_kb"] if minutes else rss_start
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else float("nan")
    unexpected = {s: n for s, n in statuses.items() if s not in expected}
    errors = sum(socket_errors.values())
    summary = {
        "url": meta["url"],
        "seconds": round(seconds, 1),
        "connections": meta["connections"],
        "requests": requests,
        "req_per_s": round(requests / seconds, 1) if seconds else 0.0,
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "unexpected_statuses": {str(s): n for s, n in sorted(unexpected.items())},
        "socket_errors": dict(socket_errors),
        "rss_kb": {"idle": meta["rss_kb_idle"], "start": rss_start, "end": rss_end},
        "rss_growth_pct": round(growth, 2),
        "minutes": [
            {
                "minute": i + 1,
                "req_per_s": round(m["requests"] / (m["duration_us"] / 1e6), 1),
                "p50_ms": round(m["p50_us"] / 1000, 2),
                "p99_ms": round(m["p99_us"] / 1000, 2),
                "statuses": m["statuses"],
                "rss_kb": m["rss_kb"],
            }
            for i, m in enumerate(minutes)
        ],
        "targets": {"unexpected_statuses": 0, "socket_errors": 0, "rss_growth_pct_below": 10.0},
    }
    summary["passed"] = not unexpected and errors == 0 and growth < 10.0 and requests > 0
    return summary


def print_report(summary: dict) -> None:
    """Human-readable table of the summary."""
    print(f"soak of {summary['url']}: {summary['seconds']} s at {summary['connections']} connections")
    print(f"{'minute':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>8}  statuses")
    for m in summary["minutes"]:
        codes = " ".join(f"{k}:{v}" for k, v in sorted(m["statuses"].items()))
        print(
            f"{m['minute']:>6} {m['req_per_s']:>8} {m['p50_ms']:>8} {m['p99_ms']:>8} "
            f"{m['rss_kb'] / 1024:>8.1f}  {codes}"
        )
    rss = summary["rss_kb"]
    print(
        f"total: {summary['requests']} requests, {summary['req_per_s']} req/s; by status: {summary['statuses']}"
    )
    errors = sum(summary["socket_errors"].values())
    print(f"unexpected statuses: {summary['unexpected_statuses'] or 0}; socket errors: {errors}")
    print(
        f"server RSS: idle {rss['idle'] / 1024:.1f} MB, start {rss['start'] / 1024:.1f} MB, "
        f"end {rss['end'] / 1024:.1f} MB ({summary['rss_growth_pct']:+.2f} %, target < 10 %)"
    )
    print(f"verdict: {'PASS' if summary['passed'] else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ids = sub.add_parser("ids", help="print known product ids")
    ids.add_argument("--limit", type=int, default=5000)
    report = sub.add_parser("report", help="summarize a soak's measurements")
    report.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "ids":
        found = known_ids(args.limit)
        if not found:
            print("soak_report: the feature store holds no product", file=sys.stderr)
            return 2
        print("\n".join(found))
        return 0
    summary = summarize(args.folder)
    (args.folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_report(summary)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
