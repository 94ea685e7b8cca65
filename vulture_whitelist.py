"""Names vulture (`make deadcode`) cannot see used: called by frameworks, not by our code.

BentoML services and hooks (bench/noop_service.py's ``Noop`` is served by name), pydantic fields and
validators, Prefect retry-condition signatures, logging/HTTP-server/HTML-parser hooks, pytest hooks, fixtures
requested only for their side effect, and dataclass fields read through ``asdict``. Regenerate with
``uv run vulture --make-whitelist`` and review every new line: anything else it reports is dead code.
"""

# ruff: noqa
# mypy: ignore-errors
Noop  # unused class (bench/noop_service.py:15)
_.default_table_expiration_ms  # unused attribute (features/bq.py:101)
_.expires  # unused attribute (features/bq.py:108)
model_config  # unused variable (features/settings.py:47)
_._snapshot_age_exceeds_ttl  # unused method (features/settings.py:129)
launches  # unused variable (features/synth_demand.py:49)
new_products  # unused variable (features/synth_demand.py:50)
discontinued  # unused variable (features/synth_demand.py:51)
intermittent  # unused variable (features/synth_demand.py:52)
task_run  # unused variable (flows/features.py:30)
_.stop_refresher  # unused method (service/api.py:51)
prediction  # unused variable (service/contract.py:40)
forecast_month  # unused variable (service/contract.py:43)
features_as_of  # unused variable (service/contract.py:45)
msg  # unused variable (service/http_guard.py:81)
_.msg  # unused attribute (service/runtime.py:117)
_.exc_text  # unused attribute (service/runtime.py:118)
_.levelname  # unused attribute (service/runtime.py:119)
pytest_collection_modifyitems  # unused function (tests/conftest.py:61)
_fresh_settings  # unused function (tests/conftest.py:77)
prefect_harness  # unused function (tests/conftest.py:87)
pytest_plugins  # unused variable (tests/conftest.py:98)
_stop_leftovers  # unused function (tests/fixtures/emulators.py:36)
bigquery_settings  # unused function (tests/fixtures/emulators.py:209)
protocol_version  # unused variable (tests/fixtures/faults.py:140)
_.log_message  # unused method (tests/fixtures/faults.py:142)
do_DELETE  # unused variable (tests/fixtures/faults.py:198)
do_GET  # unused variable (tests/fixtures/faults.py:198)
do_HEAD  # unused variable (tests/fixtures/faults.py:198)
do_PATCH  # unused variable (tests/fixtures/faults.py:198)
do_POST  # unused variable (tests/fixtures/faults.py:198)
do_PUT  # unused variable (tests/fixtures/faults.py:198)
_.daemon_threads  # unused attribute (tests/fixtures/faults.py:207)
ctx  # unused variable (tests/test_fuzz_api.py:35)
restore_mlflow_uri  # unused function (tests/test_reliability_mlflow.py:42)
fast_refresh  # unused function (tests/test_service_api.py:182)
_.handle_starttag  # unused method (tests/test_service_hardening.py:267)
_.handle_endtag  # unused method (tests/test_service_hardening.py:274)
_.handle_data  # unused method (tests/test_service_hardening.py:277)
_.should_exit  # unused attribute (tests/test_service_http_guard.py:65)
_patched  # unused function (tests/test_service_patches.py:23)
pytestmark  # pytest reads it (tests/test_ui_api.py)
