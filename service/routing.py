"""Route templates for the server's Prometheus labels, and a JSON 404 for paths no route serves.

BentoML 1.4.40's HTTP metrics middleware (``RunnerTrafficMetricsMiddleware``, the outermost layer of every
service) labels each request with its raw ``scope["path"]``: every distinct unknown path becomes a new label
set of a histogram, a counter and a gauge, kept for the life of the process and written to the multiprocess
metric files — anonymous clients can grow ``/metrics`` and the workers' memory without bound.
``label_metrics_by_route`` replaces that middleware class (BentoML looks it up when it builds the app) with a
subclass that shows it the *route template* instead (``/static_content/{path}`` for a mount, the inner route's template for
a mounted app with routes: ``/ui``, ``/ui/forecasts.csv``) and one label,
``UNMATCHED``, for every path that no route serves; the layers inside it still see the real path.

``UnknownRoutes`` answers requests that no route serves with a JSON 404 before Starlette's router, which would
otherwise redirect ``/readyz/`` to ``/readyz`` with a ``Location`` built from the client's ``Host`` header.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.routing import Match, Mount, Route

from service import patching
from service.errors import json_messages

logger = logging.getLogger("bentoml.tamales.routing")

UNMATCHED = "<unmatched>"
_ORIGINAL_PATH = "tamales.original_path"
_PATCHED_ATTR = "__tamales_route_labels__"
Scope = dict[str, Any]


def _template(route: Any) -> str:
    path = getattr(route, "path", None) or getattr(route, "name", None) or UNMATCHED
    return f"{path.rstrip('/')}/{{path}}" if isinstance(route, Mount) else path


def _mounted(route: Any, child_scope: Scope) -> str | None:
    """For a mount of an app with its own routes (``bentoml.asgi_app``, e.g. the planners' page): the mount
    path + the template of the inner route that serves ``child_scope``; None otherwise."""
    inner = getattr(getattr(route, "app", None), "routes", None)
    if not isinstance(route, Mount) or not inner:
        return None
    partial = None
    for sub in inner:
        match, _ = sub.matches(child_scope)
        if match is Match.FULL:
            return route.path.rstrip("/") + _template(sub)
        if match is Match.PARTIAL and partial is None:
            partial = sub
    return None if partial is None else route.path.rstrip("/") + _template(partial)


class RouteTable:
    """The route templates of one Starlette app: ``template(scope)`` is the template of the route that would
    serve the request (a method mismatch counts: it is that route's 405), None if no route would."""

    def __init__(self, routes: list[Any]) -> None:
        self._routes = list(routes)
        # Parameterless routes: a dict lookup instead of a regex per route, for the hot path.
        self._exact = {
            r.path: r.path for r in self._routes if isinstance(r, Route) and not r.param_convertors
        }

    @classmethod
    def of(cls, scope: Scope) -> RouteTable | None:
        """The table of the Starlette app serving ``scope`` (None outside one)."""
        app = scope.get("app")
        router = getattr(app, "router", None)
        return None if router is None else cls(router.routes)

    def template(self, scope: Scope) -> str | None:
        """Template of the route for ``scope`` (an HTTP scope), or None."""
        if not scope.get("root_path"):
            found = self._exact.get(scope["path"])
            if found is not None:
                return found
        partial = None
        for route in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return _mounted(route, {**scope, **child}) or _template(route)
            if match is Match.PARTIAL and partial is None:
                partial = (route, child)
        return (
            None
            if partial is None
            else _mounted(partial[0], {**scope, **partial[1]}) or _template(partial[0])
        )


class _Routes:
    """Lazily built ``RouteTable`` of the app a middleware runs in (the app exists only once it is called)."""

    def __init__(self) -> None:
        self._table: RouteTable | None = None

    def template(self, scope: Scope) -> str | None | bool:
        """The template, None for no route, False when the app's routes cannot be known."""
        if self._table is None:
            self._table = RouteTable.of(scope)
            if self._table is None:
                return False
        return self._table.template(scope)


class UnknownRoutes:
    """ASGI middleware: a JSON 404 for any HTTP request that no route of the app serves (no redirects)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._routes = _Routes()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self._routes.template(scope) is None:
            for message in json_messages(404, {"error": "Not Found"}):
                await send(message)
            return
        await self.app(scope, receive, send)


class _RealPath:
    """Inside the metrics middleware: give the wrapped app back the request's real path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        original = scope.get(_ORIGINAL_PATH)
        if original is not None:
            scope = {k: v for k, v in scope.items() if k != _ORIGINAL_PATH}
            scope["path"] = original
        await self.app(scope, receive, send)


def _route_labelled(base: type) -> type:
    class RouteLabelledMetrics(base):
        """BentoML's traffic metrics, labelled by route template (see ``service.routing``)."""

        def __init__(self, app: Any, **options: Any) -> None:
            super().__init__(_RealPath(app), **options)
            self._routes = _Routes()

        async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                template = self._routes.template(scope)
                label = template if isinstance(template, str) else UNMATCHED
                if label != scope["path"]:
                    scope = {**scope, "path": label, _ORIGINAL_PATH: scope["path"]}
            await super().__call__(scope, receive, send)

    setattr(RouteLabelledMetrics, _PATCHED_ATTR, True)
    return RouteLabelledMetrics


def label_metrics_by_route() -> bool:
    """Make BentoML label its HTTP metrics by route template (idempotent; call before the app is built).

    False if this BentoML has no such middleware to replace (nothing changed).
    """
    try:
        from bentoml._internal.server.http import instruments
    except ImportError:
        return False
    base = getattr(instruments, "RunnerTrafficMetricsMiddleware", None)
    if base is None:
        logger.warning("BentoML's RunnerTrafficMetricsMiddleware is gone; metrics keep raw path labels")
        return False
    if getattr(base, _PATCHED_ATTR, False):
        return True
    if not patching.guard("route-labelled metrics", base.__call__, patching.METRICS_CALL_SHA256):
        return False
    instruments.RunnerTrafficMetricsMiddleware = _route_labelled(base)  # type: ignore[misc, assignment]
    return True
