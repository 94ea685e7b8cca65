"""How the forecaster is kept in the BentoML model store: one XGBoost Booster file plus MLflow labels.

The packaging flow writes it (``flows.packaging``), the service reads it. ``bentoml.xgboost.save_model``
is not used: it looks up the ``xgboost`` distribution's version, which fails with the ``xgboost-cpu`` wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xgboost as xgb

from training.forecast import ModelSpec, spec_of

BOOSTER_FILE = "booster.ubj"
LABEL_REGISTERED_MODEL = "mlflow_model"
LABEL_MLFLOW_VERSION = "mlflow_version"
LABEL_RUN_ID = "mlflow_run_id"
LABEL_DATA_VERSION = "data_version"


@dataclass(frozen=True)
class LoadedModel:
    """The booster ready for single-row prediction plus what the responses report about it."""

    booster: xgb.Booster
    spec: ModelSpec  # the feature columns to encode and the transform around the booster
    version: str
    labels: dict[str, str]
    metadata: dict[str, Any]


def load(stored: Any) -> LoadedModel:
    """Load a ``bentoml.Model`` written by the packaging flow (booster pinned to one thread)."""
    booster = xgb.Booster(model_file=stored.path_of(BOOSTER_FILE))
    # One row per request: thread fan-out costs more than it saves, and workers already use every core.
    booster.set_param({"nthread": 1})
    labels = dict(stored.info.labels)
    return LoadedModel(
        booster=booster,
        spec=spec_of(booster),
        version=labels.get(LABEL_MLFLOW_VERSION, str(stored.tag.version)),
        labels=labels,
        metadata=dict(stored.info.metadata),
    )
