"""The editor's HTTP layer: a Starlette app over an :class:`EditorSession`, served by uvicorn.

Safety: the server binds 127.0.0.1 unless told otherwise and then also refuses requests whose Host
header is not a loopback name (DNS rebinding); the page and every ``/api/`` route need the session
token (``?token=`` or the ``X-CSG-Token`` header), compared in constant time; only the package's
own page files, the session's inputs (re-encoded) and files the session wrote are served, by fixed
names; request bodies are parsed strictly (NaN / Infinity refused, 1 MB at most) and a bad request
gets a 400 with ``{"error": "..."}`` before anything changes.
"""
from __future__ import annotations

import functools
import json
import logging
import secrets
import socket
import threading
from importlib import resources
from typing import Any, Awaitable, Callable

from csg.errors import CsgError

from .session import BusyError, EditorSession
from .state import EditError

logger = logging.getLogger(__name__)

MAX_BODY = 1 << 20
STATIC = {"index.html": "text/html; charset=utf-8", "editor.js": "text/javascript; charset=utf-8",
          "editor.css": "text/css; charset=utf-8"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class TokenGuard:
    """ASGI middleware: ``/`` and every ``/api/`` path need the session token."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (scope["path"] == "/" or scope["path"].startswith("/api/")):
            from starlette.requests import Request
            from starlette.responses import JSONResponse

            req = Request(scope)
            got = req.headers.get("x-csg-token") or req.query_params.get("token") or ""
            if not secrets.compare_digest(got.encode(), self.token):
                resp = JSONResponse({"error": "missing or wrong session token: open the address "
                                              "`csg edit` printed"}, status_code=403)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json(request) -> dict[str, Any]:
    """The request body as a JSON object (empty body: {}); anything else: :class:`EditError`."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise EditError(f"request body is over {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise EditError(f"request body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise EditError(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _query_int(request, name: str, default: int | None = None) -> int | None:
    v = request.query_params.get(name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        raise EditError(f"{name} must be a whole number, got {v!r}") from None


def api(fn: Callable[..., Awaitable[Any]]):
    """Turn results into JSON (dicts) and errors into ``{"error": ...}`` with 400 / 409 / 500."""
    from starlette.responses import JSONResponse, Response

    @functools.wraps(fn)
    async def wrapper(request):
        try:
            out = await fn(request)
        except BusyError as e:
            return JSONResponse({"error": str(e)}, status_code=409)
        except CsgError as e:
            return JSONResponse({"error": " ".join(str(e).split())}, status_code=400)
        except Exception as e:  # noqa: BLE001 - the page shows it; the log has the traceback
            logger.exception("editor request %s failed", request.url.path)
            return JSONResponse({"error": f"unexpected {type(e).__name__}: {e}"}, status_code=500)
        if isinstance(out, Response):
            out.headers["Cache-Control"] = "no-store"
            return out
        return JSONResponse(out, headers={"Cache-Control": "no-store"})

    return wrapper


def create_app(session: EditorSession, token: str, *, check_host: bool = True):
    """The Starlette app. ``check_host``: refuse non-loopback Host headers (use when bound to
    127.0.0.1)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool as bg
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    s = session

    def static(name: str) -> Response:
        text = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(text, media_type=STATIC[name], headers={"Cache-Control": "no-store"})

    async def index(request):
        return static("index.html")

    async def static_file(request):
        name = request.path_params["name"]
        if name not in STATIC:
            return JSONResponse({"error": "not found"}, status_code=404)
        return static(name)

    @api
    async def info(request):
        return await bg(s.info)

    @api
    async def poses(request):
        data = await bg(s.poses_bytes, _query_int(request, "start", 0),
                        _query_int(request, "stop"))
        return Response(data, media_type="application/octet-stream",
                        headers={"X-CSG-Version": str(s.state.version)})

    @api
    async def frame(request):
        return await bg(s.frame_json, int(request.path_params["t"]))

    @api
    async def photo(request):
        return Response(await bg(s.photo_png), media_type="image/png")

    @api
    async def audio(request):
        return Response(await bg(s.audio_wav), media_type="audio/wav")

    @api
    async def waveform(request):
        return await bg(s.waveform, _query_int(request, "per_frame", 4) or 4)

    @api
    async def render_frame(request):
        name = request.query_params.get("renderer", "warp")
        png = await bg(s.render_frame_png, int(request.path_params["t"]), name,
                       _query_int(request, "seed", 0))
        return Response(png, media_type="image/png")

    @api
    async def edit(request):
        return await bg(s.edit, await read_json(request))

    @api
    async def lock(request):
        body = await read_json(request)
        return await bg(lambda: s.set_locked(**_fields(body, "start", "stop", "locked")))

    @api
    async def undo(request):
        await read_json(request)
        return await bg(s.undo)

    @api
    async def redo(request):
        await read_json(request)
        return await bg(s.redo)

    @api
    async def regenerate(request):
        body = await read_json(request)
        job = await bg(lambda: s.start_regenerate(
            **_fields(body, "start", "stop", "seed", "steps", "cfg")))
        return JSONResponse(job.to_dict(), status_code=202)

    @api
    async def render(request):
        body = await read_json(request)
        job = await bg(lambda: s.start_render(
            **_fields(body, "start", "stop", "renderer", "seed", "name")))
        return JSONResponse(job.to_dict(), status_code=202)

    @api
    async def job(request):
        return s.job(int(request.path_params["id"])).to_dict()

    @api
    async def save(request):
        await read_json(request)
        return await bg(s.save)

    @api
    async def export(request):
        body = await read_json(request)
        return await bg(lambda: s.export_openpose(**_fields(body, "body_format")))

    @api
    async def files(request):
        path = s.file_path(request.path_params["name"])
        return FileResponse(path, media_type="video/mp4" if path.suffix == ".mp4" else None)

    routes = [
        Route("/", index), Route("/static/{name}", static_file),
        Route("/api/session", info), Route("/api/poses", poses),
        Route("/api/frames/{t:int}", frame), Route("/api/photo", photo),
        Route("/api/audio", audio), Route("/api/waveform", waveform),
        Route("/api/render/frame/{t:int}", render_frame),
        Route("/api/edit", edit, methods=["POST"]), Route("/api/lock", lock, methods=["POST"]),
        Route("/api/undo", undo, methods=["POST"]), Route("/api/redo", redo, methods=["POST"]),
        Route("/api/regenerate", regenerate, methods=["POST"]),
        Route("/api/render", render, methods=["POST"]),
        Route("/api/jobs/{id:int}", job), Route("/api/save", save, methods=["POST"]),
        Route("/api/export", export, methods=["POST"]),
        Route("/api/files/{name}", files),
    ]
    middleware = [Middleware(TokenGuard, token=token)]
    if check_host:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK)))
    return Starlette(routes=routes, middleware=middleware)


def _fields(body: dict[str, Any], *allowed: str) -> dict[str, Any]:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise EditError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return body


class EditorServer:
    """uvicorn serving :func:`create_app` on a socket bound here (port 0: a free one).

    ``run()`` blocks (the CLI); ``start()`` / ``stop()`` run it on a thread (tests, notebooks).
    """

    def __init__(self, session: EditorSession, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None):
        import uvicorn

        self.session, self.host = session, host
        self.token = token or new_token()
        try:
            self.sock = socket.create_server((host, port), reuse_port=False)
        except OSError as e:
            raise CsgError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another "
                           "--port or leave it out for a free one") from None
        self.port = self.sock.getsockname()[1]
        app = create_app(session, self.token, check_host=host in LOOPBACK)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> str:
        self._thread = threading.Thread(target=self.run, name="csg-edit-server", daemon=True)
        self._thread.start()
        import time

        t0 = time.time()
        while not self.server.started and time.time() - t0 < 30:
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()
