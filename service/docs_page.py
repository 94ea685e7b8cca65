"""The Swagger UI page served at ``/``: BentoML's, minus everything that reaches other origins.

BentoML 1.4.40's index page (``_bentoml_impl/server/main-openapi.html``) loads Google Tag Manager (a script
and an iframe from googletagmanager.com), links to GitHub, and its Swagger UI configuration leaves the
online validator on (a badge image fetched from validator.swagger.io with the spec's URL for any host that is
not localhost). A browser opening the docs would phone home despite the project's no-telemetry promise.

The OpenAPI document's description (BentoML's default README when a bento has no description of its own)
embeds badge images from img.shields.io, readthedocs.org and badgen.net, which the page would render.

This page uses only the Swagger UI files BentoML serves itself under ``/static_content/`` (no CDN), turns the
validator off, and is sent with a Content-Security-Policy that allows no other origin, so a browser refuses
any request elsewhere even if a future asset tried one. The inline initializer is allowed by its hash.
``without_remote_images`` drops the remote images from the description (``service.openapi`` applies it).
"""

from __future__ import annotations

import base64
import hashlib
import re

INITIALIZER = """
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "./docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
};
"""

PAGE = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>Tamales forecast service</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
    <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" sizes="32x32" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script>{INITIALIZER}</script>
  </body>
</html>
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(INITIALIZER.encode()).digest()).decode()
# Swagger UI sets inline styles and uses data: images in its stylesheet; nothing may come from elsewhere.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"script-src 'self' 'sha256-{_SCRIPT_HASH}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def page_messages() -> tuple[dict, dict]:
    """The two ASGI messages (start, body) of the docs page."""
    body = PAGE.encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
    ]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    return start, {"type": "http.response.body", "body": body, "more_body": False}


_REMOTE_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//[^)]*\)")
_EMPTY_LINK = re.compile(r"\[\s*\]\([^)]*\)")


def without_remote_images(markdown: str) -> str:
    """``markdown`` without images served from another origin (badges), and without links left empty."""
    return _EMPTY_LINK.sub("", _REMOTE_IMAGE.sub("", markdown))
