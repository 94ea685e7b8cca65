"""Property-based fuzzing of the served bento with schemathesis, from the OpenAPI document it publishes.

The session's bento runs under ``bentoml serve`` (``tests.fixtures.serving.bento_server``); schemathesis
loads its ``/docs.json`` and generates cases for every route in it: valid ones (schema-conforming bodies, i.e.
mostly unknown product ids and batches of them) and invalid ones (wrong types, missing or extra fields,
out-of-range lengths, ids outside the documented pattern, non-JSON bodies). The session's real product ids go
through the same checks as explicit cases, so the 200 answers are validated too.

Every response goes through all of schemathesis' built-in checks (no 5xx, a documented status code and
content type, a body matching the documented schema, valid input accepted, invalid input rejected), plus
ours: error answers are JSON objects with a reason and no response carries a stack trace. Generation is
derandomized so CI runs the same cases every time; at least ``MIN_CASES`` cases run in total.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from service.contract import BATCH_ROUTE, PREDICT_ROUTE
from tests.fixtures import serving

MIN_CASES = 2_000
# Per operation and generation mode: 2 API routes x 2 modes x 500. Routes without inputs (the probes) have
# a single possible request, so Hypothesis stops after it.
MAX_EXAMPLES = 500
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "site-packages/")


@schemathesis.check
def json_error_without_traceback(ctx, response, case) -> bool | None:
    """Error answers are JSON objects ``{"error": reason, ...}``; no answer leaks a stack trace."""
    text = response.text
    for marker in TRACEBACK_MARKERS:
        if marker in text:
            raise AssertionError(f"response leaks internals ({marker!r}): {text[:300]}")
    if response.status_code >= 400:
        body = response.json()
        if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
            raise AssertionError(f"error answer without a JSON reason: {text[:300]}")
    return None


class Tally:
    """Cases run per operation and statuses seen per (operation, status)."""

    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()

    def call(self, case, base_url: str) -> None:
        """Send one case and run every check on its response (raises on a failed check)."""
        self.cases[case.operation.label] += 1
        response = case.call_and_validate(
            base_url=base_url, additional_checks=[json_error_without_traceback], timeout=30
        )
        self.statuses[(case.operation.label, response.status_code)] += 1


def _has_inputs(operation) -> bool:
    return bool(list(operation.body)) or any(True for _ in operation.iter_parameters())


def fuzz(operation, mode: GenerationMode, base_url: str, tally: Tally) -> None:
    """Up to ``MAX_EXAMPLES`` generated cases of one operation; the first failure is shrunk and raised."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        tally.call(case, base_url)

    run()


@pytest.fixture(scope="module")
def api_schema(bento_server: serving.BentoServer):
    """The OpenAPI document the served bento publishes."""
    return schemathesis.openapi.from_url(f"{bento_server.url}/docs.json")


@pytest.mark.timeout(900)
def test_every_route_survives_generated_input(
    api_schema, bento_server: serving.BentoServer, feature_rows: dict
):
    tally = Tally()
    operations = {op.label: op for op in (result.ok() for result in api_schema.get_all_operations())}
    predict, batch = operations[f"POST {PREDICT_ROUTE}"], operations[f"POST {BATCH_ROUTE}"]
    assert {"GET /readyz", "GET /livez", "GET /metrics"} <= set(operations)
    # Every answer the service can give is documented (service/openapi.py), not only what fuzzing reaches.
    paths = api_schema.raw_schema["paths"]
    assert {"400", "404", "413", "415", "503"} <= set(paths[PREDICT_ROUTE]["post"]["responses"])
    assert {"400", "413", "415"} <= set(paths[BATCH_ROUTE]["post"]["responses"])
    assert "503" in paths["/readyz"]["get"]["responses"]

    # Explicit cases: every real product, alone and in batches with unknown ids.
    known = sorted(feature_rows)
    for product_id in known:
        tally.call(
            predict.Case(body={"productid": product_id}, media_type="application/json"), bento_server.url
        )
    for size in (1, 7, len(known)):
        ids = [*known[:size], "999999999", known[0]]
        tally.call(batch.Case(body={"productids": ids}, media_type="application/json"), bento_server.url)
    assert tally.statuses[(predict.label, 200)] == len(known)

    for operation in operations.values():
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if _has_inputs(operation) else []
        for mode in modes or [GenerationMode.POSITIVE]:
            fuzz(operation, mode, bento_server.url, tally)

    total = sum(tally.cases.values())
    print(f"\nschemathesis: {total} cases; per route {dict(tally.cases)}; statuses {dict(tally.statuses)}")
    assert total >= MIN_CASES, dict(tally.cases)
    assert set(tally.cases) == set(operations)  # every published route was exercised
    assert not [key for key in tally.statuses if key[1] >= 500]  # (also a check on every single case)
    # Both kinds of input reached the API routes: accepted (200/404) and rejected (400).
    for label in (predict.label, batch.label):
        assert tally.statuses[(label, 400)] > 0
    assert tally.statuses[(predict.label, 404)] > 0 and tally.statuses[(batch.label, 200)] > 0
