"""Opportunistic batching of single-row predictions (service.batching) on a real event loop."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import xgboost as xgb

from service.batching import RowBatcher
from training.forecast import QUANTILES, ModelSpec, attach_spec, predict_quantiles
from training.recipe import DEFAULT_FEATURES


class Recorder:
    """A predict function that records the shape of every call (rows times two)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, X: np.ndarray) -> np.ndarray:
        self.calls.append(X.shape[0])
        return X * 2


def test_rows_of_one_loop_turn_share_one_call_in_order():
    recorder = Recorder()

    async def scenario():
        batcher = RowBatcher(recorder)
        futures = [batcher.submit(np.array([[float(i)]])) for i in range(5)]
        results = await asyncio.gather(*futures)
        alone = await batcher.submit(np.array([[7.0]]))
        return results, alone

    results, alone = asyncio.run(scenario())
    assert [r.tolist() for r in results] == [[0.0], [2.0], [4.0], [6.0], [8.0]]
    assert alone.tolist() == [14.0]
    assert recorder.calls == [5, 1]


def test_concurrent_requests_are_batched_and_a_lone_one_is_not_delayed():
    recorder = Recorder()

    async def request(batcher: RowBatcher, value: float) -> float:
        await asyncio.sleep(0)  # the request's own awaits before it reaches the model
        return float((await batcher.submit(np.array([[value]])))[0])

    async def scenario():
        batcher = RowBatcher(recorder)
        answers = await asyncio.gather(*(request(batcher, v) for v in range(10)))
        loop = asyncio.get_running_loop()
        start = loop.time()
        await request(batcher, 3.0)
        return answers, loop.time() - start

    answers, lone_seconds = asyncio.run(scenario())
    assert answers == [2.0 * v for v in range(10)]
    assert recorder.calls == [10, 1]
    assert lone_seconds < 0.05


def test_max_batch_flushes_early():
    recorder = Recorder()

    async def scenario():
        batcher = RowBatcher(recorder, max_batch=4)
        return await asyncio.gather(*(batcher.submit(np.array([[float(i)]])) for i in range(10)))

    results = asyncio.run(scenario())
    assert [float(r[0]) for r in results] == [2.0 * i for i in range(10)]
    assert recorder.calls == [4, 4, 2]


def test_an_error_reaches_every_waiting_request_and_the_batcher_recovers():
    calls = []

    def flaky(X: np.ndarray) -> np.ndarray:
        calls.append(X.shape[0])
        if len(calls) == 1:
            raise ValueError("model exploded")
        return X

    async def scenario():
        batcher = RowBatcher(flaky)
        first = await asyncio.gather(
            *(batcher.submit(np.ones((1, 1))) for _ in range(3)), return_exceptions=True
        )
        second = await batcher.submit(np.ones((1, 1)))
        return first, second

    first, second = asyncio.run(scenario())
    assert all(isinstance(e, ValueError) for e in first)
    assert second.tolist() == [1.0]


def test_a_cancelled_request_does_not_disturb_the_others():
    recorder = Recorder()

    async def scenario():
        batcher = RowBatcher(recorder)
        gone = batcher.submit(np.array([[1.0]]))
        kept = batcher.submit(np.array([[2.0]]))
        gone.cancel()
        return await kept

    assert asyncio.run(scenario()).tolist() == [4.0]


def test_batched_quantiles_equal_row_by_row_quantiles():
    """With the real forecast code and a real booster, a batch gives each row's own answer."""
    rng = np.random.default_rng(3)
    X = rng.lognormal(8, 1, size=(200, len(DEFAULT_FEATURES))).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, DEFAULT_FEATURES.index("source")] = rng.integers(0, 2, len(X))  # a category code, never missing
    params = {
        "objective": "reg:quantileerror",
        "quantile_alpha": list(QUANTILES),
        "max_depth": 3,
        "nthread": 1,
    }
    booster = xgb.train(params, xgb.DMatrix(X, label=rng.normal(0, 0.2, 200)), 20)
    attach_spec(booster, ModelSpec(DEFAULT_FEATURES, "seasonal_forecast"))
    rows = [X[i : i + 1] for i in range(12)]

    async def scenario():
        batcher = RowBatcher(lambda M: predict_quantiles(booster, M))
        return await asyncio.gather(*(batcher.submit(r) for r in rows)), batcher.calls

    batched, calls = asyncio.run(scenario())
    assert calls == 1
    for row, got in zip(rows, batched, strict=True):
        assert got == pytest.approx(predict_quantiles(booster, row)[0], rel=1e-6)
