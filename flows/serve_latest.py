"""Serve the newest forecast bento in the foreground (``make run``'s last step).

    uv run python -m flows.serve_latest [--port 3000] [--host 127.0.0.1]
    uv run python -m flows.serve_latest --print-product-id     # one real product id, for scripts
    uv run python -m flows.serve_latest --print-bento-tag      # the bento it would serve

Prints a ready-to-paste ``curl`` with a real product id from the feature store and the URL of the planners' page
(``/ui``) for it, then replaces itself with
``bentoml serve <bento>``. The service finds the feature store through the same ``TAMALES_*`` settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import quote

from service import contract


def latest_bento_tag() -> str:
    """Tag of the most recently built bento of the forecast service (``LookupError`` if none)."""
    import bentoml

    bentos = bentoml.bentos.list(contract.SERVICE_NAME)
    if not bentos:
        raise LookupError(
            f"no {contract.SERVICE_NAME!r} bento in the BentoML store: run `python -m flows.package`"
        )
    return str(max(bentos, key=lambda b: b.info.creation_time).tag)


def example_product_id() -> str:
    """A product id that has features (the one with the largest latest sales, for a telling example)."""
    from features.feature_store import get_feature_store

    rows = get_feature_store().latest_rows()
    if not rows:
        raise LookupError("the feature store is empty: run the features flow first")
    return max(rows, key=lambda pid: (rows[pid].get("total_sales") or 0.0, pid))


def curl_example(product_id: str, host: str, port: int) -> str:
    """The copy-paste call of the predict route."""
    body = json.dumps({"productid": product_id})
    return (
        f"curl -s -X POST http://{host}:{port}{contract.PREDICT_ROUTE} "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


def page_url(product_id: str, host: str, port: int) -> str:
    """The URL of the planners' page (``/ui``) showing one product."""
    return f"http://{host}:{port}/ui?product={quote(product_id, safe='')}"


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: print the example call, then exec ``bentoml serve``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--print-product-id", action="store_true", help="print one real product id and exit")
    parser.add_argument(
        "--print-bento-tag", action="store_true", help="print the newest bento's tag and exit"
    )
    args = parser.parse_args(argv)
    try:
        if args.print_bento_tag:
            print(latest_bento_tag())
            return
        product_id = example_product_id()
        if args.print_product_id:
            print(product_id)
            return
        tag = latest_bento_tag()
    except LookupError as exc:
        print(f"serve_latest: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(
        f"Serving bento {tag} on http://{args.host}:{args.port} — try:\n\n  {curl_example(product_id, args.host, args.port)}\n"
        f"\nThe planners' page: {page_url(product_id, args.host, args.port)}\n"
    )
    sys.stdout.flush()
    cmd = [sys.executable, "-m", "bentoml", "serve", tag, "--host", args.host, "--port", str(args.port)]
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
