"""Forecast accuracy on generated deliveries: the rolling-origin backtest table, model vs every baseline.

    uv run python bench/accuracy.py                          # realistic + easy profiles, seeds 1-3
    uv run python bench/accuracy.py --profiles realistic --seeds 1,2,3,4,5,6 --origins 6
    uv run python bench/accuracy.py --variant '{"base": "level_forecast"}'   # a recipe variant (ablation)

Each (profile, seed) is generated, ingested and featurised in-process (the flows' own functions, no Prefect),
then the recipe is backtested (``training.backtest``) and compared with the baselines on the same origins
(``training.reference``). Prints one table per profile (mean over seeds) and the ratio of the model's WAPE
to the best statsforecast baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402


def feature_rows(profile: str, seed: int, work: Path, state: Path) -> pl.DataFrame:
    """Generate, ingest and featurise one sample delivery; its full feature table."""
    os.environ.update(
        TAMALES_RAW_URL=str(work / "raw"),
        TAMALES_PROCESSED_URL=str(work / "processed"),
        TAMALES_STATE_DIR=str(state),
    )
    from features.settings import get_settings

    get_settings.cache_clear()
    from features import dataset
    from features.ingest import ingest_delivery
    from features.synth import generate

    generate(work / "delivery", seed=seed, profile=profile)
    ingest_delivery(str(work / "delivery"), str(work / "raw"))
    features, _ = dataset.build_dataset(dataset.resolve_inputs())
    return features


def evaluate(rows: pl.DataFrame, overrides: dict, origins: int) -> dict[str, dict[str, float]]:
    """Backtest the default recipe (with ``overrides``) and score it against the baselines."""
    from features.settings import get_settings
    from training import backtest, evaluate, reference
    from training.recipe import Recipe

    calendars = get_settings().calendars
    recipe = Recipe(calendars=calendars).with_overrides(overrides)
    result = backtest.run(rows, recipe, origins)
    return evaluate.compare(
        result.predictions, reference.baseline_forecasts(rows, result.origins, calendars)
    ).scores


def table(scores: list[dict[str, dict[str, float]]]) -> tuple[str, float, list[float]]:
    """Markdown table of mean scores over seeds, and the mean ratio model / best statsforecast baseline."""
    from training.reference import STATISTICAL

    names = list(scores[0])
    columns = ["wape", "wape_erp", "wape_teinvento", "bias", "coverage_p10_p90"]
    lines = ["| forecaster | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in names:
        cells = []
        for column in columns:
            values = [s[name][column] for s in scores if column in s[name]]
            cells.append(f"{np.mean(values):.3f}" if values else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ratios = [round(s["model"]["wape"] / min(s[n]["wape"] for n in STATISTICAL), 3) for s in scores]
    return "\n".join(lines), float(np.mean(ratios)), ratios


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (see module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", default="realistic,easy")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--variant", type=json.loads, default={}, help="JSON recipe overrides")
    parser.add_argument(
        "--variants", type=json.loads, help='several named variants at once: {"name": {overrides}, ...}'
    )
    parser.add_argument(
        "--signals",
        type=json.loads,
        default={},
        help='feature-builder constants to try, e.g. {"FACTOR_DECAY": 0.8}',
    )
    parser.add_argument("--keep", type=Path, help="keep the generated work folders here")
    parser.add_argument(
        "--state",
        type=Path,
        default=Path(__file__).resolve().parent / "out" / "accuracy-state",
        help="state dir: caches the statsforecast baselines (by a digest of the data) between runs",
    )
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="tamales-accuracy-"))
    if args.signals:
        from features import signals

        for name, value in args.signals.items():
            if not hasattr(signals, name):
                raise SystemExit(f"features.signals has no constant {name}")
            setattr(signals, name, value)
    variants = args.variants or {"model": args.variant}
    try:
        for profile in args.profiles.split(","):
            scores: dict[str, list] = {name: [] for name in variants}
            for seed in (int(s) for s in args.seeds.split(",")):
                start = time.perf_counter()
                rows = feature_rows(profile, seed, root / f"{profile}-{seed}", args.state)
                for name, overrides in variants.items():
                    scores[name].append(evaluate(rows, overrides, args.origins))
                    ratio = scores[name][-1]["model"]["wape"] / min(
                        v["wape"] for k, v in scores[name][-1].items() if k.startswith("Auto")
                    )
                    print(
                        f"{profile} seed {seed} {name}: model WAPE {scores[name][-1]['model']['wape']:.3f}, "
                        f"ratio to best statsforecast {ratio:.3f} ({time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
            for name in variants:
                text, mean_ratio, ratios = table(scores[name])
                print(
                    f"\n## {profile}: {name} (mean of {len(ratios)} seeds, {args.origins} origins per source)\n"
                )
                print(
                    f"{text}\n\nmodel / best statsforecast WAPE: mean {mean_ratio:.3f}, per seed {ratios}\n"
                )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
