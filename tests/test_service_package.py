"""The packaging flow: champion → BentoML model (labels, reuse) → bento (contents, pins, idempotence)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from flows import packaging
from service import contract

IMPORTED_MODULES = {
    "features/__init__.py",
    "features/settings.py",
    "features/telemetry.py",
    "features/calendar.py",
    "features/bq.py",
    "features/schema.py",
    "features/feature_store.py",
    "features/forecast_schema.py",  # the planners' page reads realized accuracy (service.ui_accuracy)
    "features/forecast_tables.py",
    "features/storage.py",
    "training/__init__.py",
    "training/forecast.py",
}


def _bento(tag: str):
    import bentoml

    return bentoml.bentos.get(tag)


def _model_tag(bento) -> str:
    (model,) = [m for svc in bento.info.services for m in svc.models]
    return str(model.tag)


def test_the_model_carries_its_mlflow_lineage(packaged_bento, trained_model, processed_version):
    import bentoml
    from mlflow import MlflowClient

    from features.settings import get_settings

    settings = get_settings()
    uri = settings.mlflow_tracking_uri
    registered = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(
        settings.model_name, str(trained_model.model_version)
    )
    stored = bentoml.models.get(_model_tag(_bento(packaged_bento)))
    assert stored.info.labels == {
        "mlflow_model": settings.model_name,
        "mlflow_version": str(trained_model.model_version),
        "mlflow_run_id": registered.run_id,
        "data_version": processed_version,
    }
    assert stored.info.metadata["quantiles"] == [0.1, 0.5, 0.9]
    assert stored.info.metadata["mlflow_alias"] == trained_model.alias
    assert Path(stored.path_of("booster.ubj")).stat().st_size > 0


def test_packaging_again_reuses_the_model_and_the_bento(packaged_bento, trained_model, prefect_harness):
    import bentoml

    from features.settings import get_settings
    from flows.package import package_flow

    name = get_settings().model_name
    models_before = len(bentoml.models.list(name))
    bentos_before = len(bentoml.bentos.list(contract.SERVICE_NAME))
    assert package_flow(alias=trained_model.alias) == packaged_bento
    assert len(bentoml.models.list(name)) == models_before
    assert len(bentoml.bentos.list(contract.SERVICE_NAME)) == bentos_before


def test_the_bento_holds_only_the_service_code(packaged_bento):
    src = Path(_bento(packaged_bento).path) / "src"
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    service = {
        p.relative_to(packaging.REPO_ROOT).as_posix()
        for pattern in ("service/*.py", "service/ui_assets/*")  # the planners' page's own JS, CSS, icon
        for p in packaging.REPO_ROOT.glob(pattern)
    }
    assert "service/api.py" in service
    assert files - {"bentofile.yaml"} == service | IMPORTED_MODULES


def test_the_bento_pins_the_serving_group_from_the_lock(packaged_bento):
    bento = Path(_bento(packaged_bento).path)
    lines = [
        ln.strip() for ln in (bento / "env/python/requirements.txt").read_text().splitlines() if ln.strip()
    ]
    assert lines and all("==" in ln and not ln.startswith("#") for ln in lines), lines
    pins = {ln.split("==")[0].lower(): ln.split("==")[1].split(";")[0].strip() for ln in lines}
    lock = tomllib.loads((packaging.REPO_ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"] if "version" in p}
    for name in ("bentoml", "xgboost-cpu", "numpy", "polars", "pyarrow", "google-cloud-bigquery", "pydantic"):
        assert pins[name] == locked[name], name
    assert not {"mlflow", "prefect", "pandas", "matplotlib", "pytest"} & set(pins)


def test_the_bento_pins_its_model_python_and_quiet_tools(packaged_bento):
    bento = _bento(packaged_bento)
    info = yaml.safe_load((Path(bento.path) / "bento.yaml").read_text())
    assert info["args"] == {"model_tag": _model_tag(bento)}
    assert info["image"]["python_version"] == "3.11"
    assert info["image"]["base_image"] == "python:3.11-slim"
    envs = {e["name"]: e["value"] for e in info["envs"]}
    assert envs["BENTOML_DO_NOT_TRACK"] == "true" and envs["DO_NOT_TRACK"] == "1"
    routes = {r["route"] for r in info["schema"]["routes"]}
    assert routes == {contract.PREDICT_ROUTE, contract.BATCH_ROUTE}


def test_no_champion_is_a_clear_error(packaged_bento, prefect_harness, capsys):
    from flows.package import main

    with pytest.raises(packaging.NoChampionError, match="has alias @nobody"):
        packaging.resolve_champion("nobody")
    with pytest.raises(SystemExit) as exit_info:
        main(["--alias", "nobody"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "has alias @nobody" in err and "run the training flow" in err and "Traceback" not in err


def test_no_mlflow_store_is_a_clear_error(tmp_path, monkeypatch):
    from features.settings import get_settings

    monkeypatch.setenv("TAMALES_STATE_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri() exports it
    get_settings.cache_clear()
    with pytest.raises(packaging.NoChampionError, match="no MLflow store"):
        packaging.resolve_champion()


def test_serve_latest_names_the_newest_bento_and_a_real_product(packaged_bento, capsys):
    from features.feature_store import get_feature_store
    from flows import serve_latest

    serve_latest.main(["--print-bento-tag"])
    assert capsys.readouterr().out.strip() == packaged_bento
    serve_latest.main(["--print-product-id"])
    product_id = capsys.readouterr().out.strip()
    assert product_id in get_feature_store().latest_rows()
    curl = serve_latest.curl_example(product_id, "127.0.0.1", 3000)
    assert curl.startswith("curl -s -X POST http://127.0.0.1:3000/apis/products/predict/1.0.0 ")
    assert f'{{"productid": "{product_id}"}}' in curl
    assert serve_latest.page_url("a b/1", "127.0.0.1", 3000) == "http://127.0.0.1:3000/ui?product=a%20b%2F1"
