"""The interactive API documentation at ``/docs``, served without any network access.

FastAPI's own page loads Swagger UI from a CDN, which a hospital network may block (and
which tells a third party who reads the docs). Here the Swagger UI assets come from the
``fastapi-offline`` package (installed with the ``server`` extra) and are served by the
gateway itself under ``/docs/static``; without that package ``/docs`` is a small page
linking the OpenAPI description. The ``docs`` setting turns both ``/docs`` and
``/openapi.json`` off.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS", "add_docs", "swagger_assets"]

ASSETS: Final = "/docs/static"
_FILES: Final = ("swagger-ui-bundle.js", "swagger-ui.css")


def swagger_assets() -> Path | None:
    """The folder holding Swagger UI's files, or ``None`` when no package ships them."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if all((folder / name).is_file() for name in _FILES) else None


def _plain_page(title: str, openapi_url: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><title>{title}</title><h1>{title}</h1>"
        f'<p>The API is described in <a href="{openapi_url}">{openapi_url}</a> (OpenAPI).</p>'
    )


def add_docs(app: FastAPI) -> None:
    """Serve ``/docs`` for ``app`` (created with ``docs_url=None``) from local assets."""
    openapi_url = app.openapi_url or "/openapi.json"
    folder = swagger_assets()
    if folder is not None:
        app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if folder is None:
            return _plain_page(app.title, openapi_url)
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )
