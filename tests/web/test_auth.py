"""The auth matrix: every route × every role × no token / bad token.

The matrix is checked against the application's own routes in both directions: a route
added, renamed or dropped without its matrix entry fails, and so does the route table of
the middleware that authorizes requests before reading their bodies.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from dicomveil.tokens import PERMISSIONS, ROLES, token_store
from dicomveil.web.routing import Resolved, RouteTable, flat_routes
from tests.web.conftest import auth

pytestmark = pytest.mark.anyio

_S, _SE, _I = "2.25.1", "2.25.2", "2.25.3"
_U = "0" * 32  # an upload id
_INSTANCE = f"/dicomweb/studies/{_S}/series/{_SE}/instances/{_I}"

#: (method, path, role needed); ``None`` means no token needed.
ROUTES: list[tuple[str, str, str | None]] = [
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/metrics", "admin"),
    ("POST", "/api/v1/deidentify", "ingest"),
    ("POST", "/api/v1/reidentify", "reidentify"),
    ("POST", "/api/v1/reidentify/instance", "reidentify"),
    ("POST", "/dicomweb/studies", "ingest"),
    ("POST", f"/dicomweb/studies/{_S}", "ingest"),
    ("GET", "/dicomweb/studies", "read"),
    ("GET", "/dicomweb/series", "read"),
    ("GET", "/dicomweb/instances", "read"),
    ("GET", f"/dicomweb/studies/{_S}/series", "read"),
    ("GET", f"/dicomweb/studies/{_S}/instances", "read"),
    ("GET", f"/dicomweb/studies/{_S}/series/{_SE}/instances", "read"),
    ("GET", f"/dicomweb/studies/{_S}", "read"),
    ("GET", f"/dicomweb/studies/{_S}/series/{_SE}", "read"),
    ("GET", _INSTANCE, "read"),
    ("GET", f"/dicomweb/studies/{_S}/metadata", "read"),
    ("GET", f"/dicomweb/studies/{_S}/series/{_SE}/metadata", "read"),
    ("GET", f"{_INSTANCE}/metadata", "read"),
    ("GET", f"{_INSTANCE}/bulkdata/7FE00010", "read"),
    ("GET", f"{_INSTANCE}/frames/1", "read"),
    ("GET", f"{_INSTANCE}/rendered", "read"),
    ("GET", f"{_INSTANCE}/frames/1/rendered", "read"),
    ("GET", f"{_INSTANCE}/thumbnail", "read"),
    ("GET", f"/dicomweb/studies/{_S}/series/{_SE}/thumbnail", "read"),
    ("GET", f"/dicomweb/studies/{_S}/thumbnail", "read"),
    ("POST", "/api/v1/batches", "ingest"),
    ("GET", "/api/v1/batches", "ingest"),
    ("GET", "/api/v1/batches/b1", "ingest"),
    ("GET", "/api/v1/batches/b1/manifest", "ingest"),
    ("POST", "/api/v1/uploads", "ingest"),
    ("POST", f"/api/v1/uploads/{_U}/complete", "ingest"),
    ("GET", f"/api/v1/uploads/{_U}", "ingest"),
]

_OPEN = {"/healthz", "/readyz", "/docs", "/openapi.json"}
_ASSETS = "/docs/static"
_SESSION = ("/console", "/viewer")  # console session, not bearer: tests/web/console pins them


def _template(path: str) -> str:
    return (
        path.replace(_S, "{study}")
        .replace(_SE, "{series}")
        .replace(_I, "{instance}")
        .replace("bulkdata/7FE00010", "bulkdata/{tag}")
        .replace("frames/1/rendered", "frames/{frame}/rendered")
        .replace("frames/1", "frames/{frame_list}")
        .replace("batches/b1", "batches/{batch_id}")
        .replace(_U, "{upload_id}")
    )


def _app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves, from its routes (not from OpenAPI,
    which leaves routes out of the schema), documentation pages and assets aside."""
    found = set()
    for route in flat_routes(app.router.routes):
        path = route.path
        if path in _OPEN or path.startswith(_ASSETS) or path.startswith(_SESSION):
            continue
        for method in route.methods or {"*"}:
            found.add((method, path))
    return found


def test_matrix_is_the_apps_routes(app: FastAPI) -> None:
    listed = {(m, _template(p)) for m, p, role in ROUTES if role is not None}
    routes = _app_routes(app)
    assert routes - listed == set(), "routes missing from the auth matrix"
    assert listed - routes == set(), "matrix entries the app does not serve"


def test_middleware_knows_every_role(app: FastAPI) -> None:
    """The role the middleware checks before the body is the one the matrix expects."""
    table = RouteTable(app.router.routes, upload_limit=1, json_limit=1)
    for method, path, role in ROUTES:
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        resolved = table.resolve(scope)
        assert resolved.policy is not None, (method, path)
        assert resolved.policy.role == role, (method, path)


@pytest.mark.parametrize(("method", "path", "role"), [r for r in ROUTES if r[2] is not None])
async def test_no_body_read_before_the_token(
    app: FastAPI, method: str, path: str, role: str
) -> None:
    """Without a valid token the answer is 401 and the body is never asked for."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        raise AssertionError("the body was read before the token was checked")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    for authorization in (b"", b"Bearer dvt_not-a-token"):
        headers = [(b"content-length", str(1 << 30).encode())]
        if authorization:
            headers.append((b"authorization", authorization))
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "scheme": "http",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 1),
            "http_version": "1.1",
            "app": app,
        }
        sent.clear()
        await app(scope, receive, send)  # type: ignore[arg-type]
        assert sent[0]["status"] == 401, (method, path)


async def _call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> int:
    answer = await client.request(method, path, headers=headers, content=b"")
    return answer.status_code


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
async def test_no_or_bad_token(
    client: httpx.AsyncClient, method: str, path: str, role: str | None
) -> None:
    for headers in (
        {},
        auth("dvt_not-a-token"),
        auth("garbage"),
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ):
        status = await _call(client, method, path, headers)
        if role is None:
            assert status in (200, 503), (path, headers)
        else:
            assert status == 401, (path, headers, status)


@pytest.mark.parametrize(("method", "path", "role"), [r for r in ROUTES if r[2] is not None])
async def test_roles(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    method: str,
    path: str,
    role: str,
) -> None:
    for held in ROLES:
        status = await _call(client, method, path, auth(tokens[held]))
        if role in PERMISSIONS[held]:
            assert status not in (401, 403), (path, held, status)
        else:
            assert status == 403, (path, held, status)


async def test_401_names_the_scheme(client: httpx.AsyncClient) -> None:
    answer = await client.get("/dicomweb/studies")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"]["code"] == "Unauthorized"


async def test_revoked_token_refused_at_once(
    client: httpx.AsyncClient, tokens: dict[str, str], home: object
) -> None:
    store = token_store(home)  # type: ignore[arg-type]
    token, secret = store.create("read", "short-lived")
    assert (await client.get("/dicomweb/studies", headers=auth(secret))).status_code == 200
    store.revoke(token.id)
    assert (await client.get("/dicomweb/studies", headers=auth(secret))).status_code == 401


def test_route_table_follows_included_prefixes() -> None:
    """Routers included with a prefix (as a new console or viewer may be) are resolved at
    their full path, with their role, and 405 names their methods."""
    from fastapi import APIRouter, Depends

    from dicomveil.web.deps import require

    inner = APIRouter()

    @inner.get("/item/{name}", dependencies=[Depends(require("read"))])
    def item(name: str) -> str:
        return name

    outer = APIRouter()
    outer.include_router(inner, prefix="/inner")
    app = FastAPI()
    app.include_router(outer, prefix="/outer")
    table = RouteTable(app.router.routes, upload_limit=2, json_limit=1)

    def resolve(method: str, path: str) -> Resolved:
        return table.resolve({"type": "http", "method": method, "path": path, "root_path": ""})

    found = resolve("GET", "/outer/inner/item/x")
    assert found.policy is not None and found.policy.role == "read"
    assert resolve("POST", "/outer/inner/item/x").allowed == {"GET"}
    assert resolve("GET", "/item/x").policy is None
