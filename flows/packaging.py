"""Packaging: the MLflow champion -> a BentoML model -> the service's bento (-> a container image).

Plain functions; ``flows.package`` wires them into the Prefect flow and ``flows.pipeline`` asks
``packaging_decision`` whether to. Every step is idempotent: the BentoML model of an MLflow version is imported
once (found again by its labels) and the bento version is a digest of everything that goes into it, so
re-packaging the same champion with the same code returns the same tag. Build tooling, not part of the bento.
BentoML keeps its own default home (``BENTOML_HOME`` if set), so the plain ``bentoml`` commands see the bentos.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from features.settings import Settings, get_settings
from service import contract
from service import model as model_io
from training import gate, tracking

REPO_ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = REPO_ROOT / "bentofile.yaml"
CONTAINERS_CONF = REPO_ROOT / "scripts" / "containers.conf"
MAKE_BASE_IMAGE = REPO_ROOT / "scripts" / "make_base_image.sh"


class NoChampionError(LookupError):
    """No model version carries the requested alias (or there is no MLflow store at all)."""


@dataclass(frozen=True)
class Champion:
    """The registered model version behind an alias."""

    name: str
    alias: str
    model_version: str
    run_id: str
    data_version: str
    test_wape: str


@dataclass(frozen=True)
class PackagingDecision:
    """Whether the package step must run, for which champion version, and the bento already serving it."""

    package: bool
    reason: str
    champion_version: str | None = None
    bento: str | None = None
    alias: str = gate.CHAMPION  # the alias packaged: @challenger only while no version is @champion

    @property
    def provisional(self) -> bool:
        """True when the packaged model is a refused @challenger, served because there is no champion yet."""
        return self.alias != gate.CHAMPION


def resolve_champion(alias: str = "champion", settings: Settings | None = None) -> Champion:
    """The version of ``settings.model_name`` behind ``@alias``; ``NoChampionError`` if there is none."""
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise NoChampionError(f"no MLflow store at {uri}: run the training flow first")
    client = tracking.client(settings)
    hint = "run the training flow first (it sets @champion when a model beats the baselines)"
    try:
        registered = client.get_registered_model(settings.model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise NoChampionError(f"no registered model {settings.model_name!r} in {uri}: {hint}") from exc
    version = (registered.aliases or {}).get(alias)
    if version is None:
        raise NoChampionError(
            f"no version of registered model {settings.model_name!r} has alias @{alias} in {uri}: {hint}"
        )
    mv = client.get_model_version(settings.model_name, str(version))
    tags = mv.tags or {}
    return Champion(
        name=settings.model_name,
        alias=alias,
        model_version=str(mv.version),
        run_id=mv.run_id or "",
        data_version=str(tags.get("data_version", "unknown")),
        test_wape=str(tags.get("test_wape", "")),
    )


def _labels(champion: Champion) -> dict[str, str]:
    return {
        model_io.LABEL_REGISTERED_MODEL: champion.name,
        model_io.LABEL_MLFLOW_VERSION: champion.model_version,
        model_io.LABEL_RUN_ID: champion.run_id,
        model_io.LABEL_DATA_VERSION: champion.data_version,
    }


def find_imported(champion: Champion) -> str | None:
    """Tag of the BentoML model already imported from this MLflow version, if any."""
    import bentoml
    from bentoml.exceptions import NotFound

    wanted = _labels(champion)
    try:
        imported = bentoml.models.list(champion.name)
    except NotFound:  # no model of that name at all
        return None
    for stored in imported:
        labels = stored.info.labels
        if all(labels.get(k) == wanted[k] for k in (model_io.LABEL_MLFLOW_VERSION, model_io.LABEL_RUN_ID)):
            return str(stored.tag)
    return None


def import_champion(champion: Champion, settings: Settings | None = None) -> str:
    """Import the champion's Booster into the BentoML model store (reused if already there); its tag."""
    existing = find_imported(champion)
    if existing is not None:
        return existing
    import bentoml
    import mlflow.xgboost

    from training import forecast

    tracking.client(settings or get_settings())  # points the mlflow module at the configured store
    booster = mlflow.xgboost.load_model(f"models:/{champion.name}/{champion.model_version}")
    # Fails here (not in the service) for a booster the current training code did not produce.
    metadata: dict[str, Any] = {
        **forecast.model_metadata(forecast.spec_of(booster)),
        "mlflow_alias": champion.alias,
    }
    if champion.test_wape:
        metadata["test_wape"] = champion.test_wape
    with bentoml.models.create(champion.name, labels=_labels(champion), metadata=metadata) as stored:
        booster.save_model(stored.path_of(model_io.BOOSTER_FILE))
    return str(stored.tag)


def write_requirements(path: Path | None = None) -> Path:
    """Write the serving group's pinned requirements (from uv.lock) where ``bentofile.yaml`` expects them."""
    config = yaml.safe_load(BENTOFILE.read_text())
    path = path or (REPO_ROOT / config["python"]["requirements_txt"]).resolve()
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(uv).exists():
        raise RuntimeError("uv is needed to pin the bento's requirements from uv.lock: run `make setup`")
    cmd = [uv, "export", "--only-group", "serving", "--frozen", "--no-hashes", "--no-emit-project", "--quiet"]
    text = subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    # Keep only the pins: uv's comments (header, "# via ...") vary with the command line, not the lock.
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(handle.name, path)
    return path


def bento_version(model_tag: str, requirements: Path) -> str:
    """Deterministic bento version: digest of the model tag, bentofile, requirements and sources."""
    config = yaml.safe_load(BENTOFILE.read_text())
    digest = hashlib.sha256()
    digest.update(model_tag.encode())
    digest.update(BENTOFILE.read_bytes())
    digest.update(requirements.read_bytes())
    for path in included_files(config):
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def included_files(config: dict[str, Any] | None = None) -> list[Path]:
    """The source files ``bentofile.yaml``'s ``include`` selects (a folder: its files, minus bytecode)."""
    config = config or yaml.safe_load(BENTOFILE.read_text())
    files: set[Path] = set()
    for pattern in config.get("include", []):
        for path in REPO_ROOT.glob(pattern.rstrip("/")):
            found = path.rglob("*") if path.is_dir() else [path]
            files |= {f for f in found if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"}
    return sorted(files)


def build_bento(model_tag: str) -> str:
    """Build the bento from ``bentofile.yaml`` serving ``model_tag`` (reused if already built); its tag."""
    import bentoml
    from bentoml.exceptions import NotFound

    config = yaml.safe_load(BENTOFILE.read_text())
    requirements = write_requirements()
    tag = f"{config['name']}:{bento_version(model_tag, requirements)}"
    try:
        return str(bentoml.bentos.get(tag).tag)
    except NotFound:
        pass
    cmd = [
        sys.executable, "-m", "bentoml", "build", "-f", str(BENTOFILE), "--version", tag.split(":", 1)[1],
        "--arg", f"model_tag={model_tag}", "--output", "tag", str(REPO_ROOT),
    ]  # fmt: skip
    # A fresh interpreter imports the service with the pinned model (this one may have imported it already).
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed ({result.returncode}):\n{result.stderr[-4000:]}")
    built = [
        line.split("__tag__:", 1)[1].strip() for line in result.stdout.splitlines() if "__tag__:" in line
    ]
    if not built:
        raise RuntimeError(f"bentoml build printed no tag:\n{result.stdout[-2000:]}")
    return built[-1]


def containerize(bento_tag: str, image: str | None = None) -> str:
    """``bentoml containerize --backend podman`` the bento (building the stand-in base image if needed).

    The image is named like the bento (podman stores it as ``localhost/<name>:<version>``); returns that name.
    """
    env = {**os.environ}
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    subprocess.run(["bash", str(MAKE_BASE_IMAGE)], check=True, env=env)
    image = image or bento_tag
    cmd = [sys.executable, "-m", "bentoml", "containerize", "--backend", "podman", bento_tag, "-t", image]
    subprocess.run(cmd, check=True, env=env, cwd=REPO_ROOT)
    return image


def bento_serving(champion: Champion) -> str | None:
    """Tag of a built bento whose model was imported from the champion's MLflow version (None if none)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:  # the stores raise NotFound rather than return [] when nothing of that name exists
        model_tag = find_imported(champion)
        bentos = bentoml.bentos.list(contract.SERVICE_NAME) if model_tag else []
    except NotFound:
        return None
    for bento in bentos:
        if any(str(model.tag) == model_tag for model in bento.info.all_models):
            return str(bento.tag)
    return None


def packaging_decision(
    promoted: bool, alias: str = gate.CHAMPION, settings: Settings | None = None
) -> PackagingDecision:
    """Whether the package step must run: ``@alias`` moved, or no bento serves its version yet."""
    settings = settings or get_settings()
    registry = tracking.client(settings)
    if tracking.alias_version(registry, settings.model_name, alias) is None:
        if alias == gate.CHAMPION and tracking.alias_version(registry, settings.model_name, gate.CHALLENGER):
            # No model has ever won the gate (first deliveries): serve the refused one rather than nothing,
            # saying so; the first recipe that wins becomes @champion and replaces it.
            provisional = packaging_decision(promoted, gate.CHALLENGER, settings)
            reason = f"no @champion yet: serving @challenger provisionally; {provisional.reason}"
            return replace(provisional, reason=reason, alias=gate.CHALLENGER)
        reason = f"nothing to package: no version of {settings.model_name!r} has alias @{alias}"
        return PackagingDecision(package=False, reason=reason)
    champion = resolve_champion(alias, settings)
    if promoted:
        return PackagingDecision(
            True, f"@{alias} moved to v{champion.model_version}", champion.model_version, alias=alias
        )
    tag = bento_serving(champion)
    if tag is None:
        return PackagingDecision(
            True,
            f"no bento serves @{alias} v{champion.model_version} yet",
            champion.model_version,
            alias=alias,
        )
    reason = f"bento {tag} already serves @{alias} v{champion.model_version}"
    return PackagingDecision(False, reason, champion.model_version, tag, alias)
