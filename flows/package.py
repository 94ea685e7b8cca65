"""Packaging flow: MLflow ``@champion`` → BentoML model → bento (→ podman image).

    uv run python -m flows.package [--alias champion] [--containerize]

Prints and returns the bento tag. Re-running with the same champion and code returns the same tag without
rebuilding (see ``flows.packaging``). Fails with a clear message when no model version carries the alias.
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow, get_run_logger, task

from flows import packaging


def _retry_unless_no_champion(task, task_run, state) -> bool:
    """Retry I/O failures, not a missing champion (retrying cannot create one)."""
    return not isinstance(state.result(raise_on_failure=False), packaging.NoChampionError)


@task(
    name="resolve-champion",
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_condition_fn=_retry_unless_no_champion,
)
def resolve_champion_task(alias: str) -> packaging.Champion:
    """The registered model version behind the alias (name, version, run id, data version)."""
    return packaging.resolve_champion(alias)


@task(name="import-model", retries=2, retry_delay_seconds=[2, 8])
def import_model_task(champion: packaging.Champion) -> str:
    """Copy the champion's Booster into the BentoML model store (once per MLflow version); its tag."""
    return packaging.import_champion(champion)


@task(name="build-bento")
def build_bento_task(model_tag: str) -> str:
    """Build the bento from bentofile.yaml for the model (reused when identical); its tag."""
    return packaging.build_bento(model_tag)


@task(name="containerize")
def containerize_task(bento_tag: str) -> str:
    """Build the bento's container image with podman; the image name."""
    return packaging.containerize(bento_tag)


@flow(name="package")
def package_flow(alias: str = "champion", containerize: bool = False) -> str:
    """Package the model version behind ``@alias`` as a bento; returns the bento tag."""
    logger = get_run_logger()
    champion = resolve_champion_task(alias)
    logger.info("champion: %s version %s (run %s)", champion.name, champion.model_version, champion.run_id)
    model_tag = import_model_task(champion)
    bento_tag = build_bento_task(model_tag)
    logger.info("bento %s serves model %s", bento_tag, model_tag)
    if containerize:
        logger.info("image %s built", containerize_task(bento_tag))
    return bento_tag


def main(argv: list[str] | None = None) -> str:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--alias", default="champion", help="MLflow registry alias to package (default: champion)"
    )
    parser.add_argument("--containerize", action="store_true", help="also build the image with podman")
    args = parser.parse_args(argv)
    try:
        bento_tag = package_flow(alias=args.alias, containerize=args.containerize)
    except packaging.NoChampionError as exc:
        print(f"package: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(bento_tag)
    return bento_tag


if __name__ == "__main__":
    main()
