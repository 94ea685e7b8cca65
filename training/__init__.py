"""Training half: quantile XGBoost forecaster, baselines, metrics, backtest, MLflow tracking and the gate.

``training.forecast`` is the only module the service needs (numpy + xgboost); the rest runs in the ``train``
flow (``flows.train``).
"""
