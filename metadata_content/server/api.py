"""The metadata API as a Flask application (app factory).

Flask handles every request that needs work: a cache miss, a password POST,
an IMDSv2 token PUT, an odd method. In front of it, as WSGI middleware
(``app.wsgi_app``), a fast path answers GET/HEAD requests whose rendering is
already cached, straight from the environ: Flask's own request machinery
costs ~180 us per request on this kind of machine, more than everything else
a cached answer needs together (see bench/api.py). Both paths call the same
:meth:`MetadataService.answer`, so identity and statuses cannot diverge.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request

from metadata_content.server.config import RESOLVED_ENV, ApiConfig
from metadata_content.server.runtime import die_with_parent, response_headers, setup_logging
from metadata_content.server.service import REASONS, MetadataService
from metadata_content.store import Store

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
STATUS_LINES = {code: f"{code} {reason}" for code, reason in REASONS.items()}


class FastPath:
    """WSGI middleware: serve cached GET/HEAD answers without entering Flask."""

    def __init__(self, service: MetadataService, app: Callable[..., Iterable[bytes]]):
        self.service = service
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        environ["configdrive.started"] = started
        reply = self.service.answer(environ, render=False)
        if reply is None:
            return self.app(environ, start_response)
        self.service.finish(reply, environ, started)
        start_response(STATUS_LINES.get(reply.status) or f"{reply.status} Error", response_headers(reply, environ))
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [reply.body]


def create_app(config: ApiConfig, store: Store | None = None) -> Flask:
    """The WSGI application for *config* (one per worker process)."""
    service = MetadataService(config, store)
    app = Flask("configdrive.api")
    app.url_map.merge_slashes = False  # the tree owns path semantics; no redirects
    app.extensions["configdrive"] = service

    def metadata(path: str = "") -> Response:
        environ = request.environ

        def read_body(n: int) -> bytes:
            return request.stream.read(n)

        reply = service.answer(environ, render=True, read_body=read_body)
        assert reply is not None
        service.finish(reply, environ, environ.get("configdrive.started", time.perf_counter()))
        resp = Response(reply.body, status=reply.status, content_type=reply.content_type)
        resp.headers["X-Openstack-Request-Id"] = environ["configdrive.request_id"]
        for name, value in reply.headers:
            resp.headers[name] = value
        return resp

    for rule in ("/", "/<path:path>"):
        app.add_url_rule(rule, "metadata", metadata, methods=METHODS,
                         provide_automatic_options=False, strict_slashes=False)
    app.wsgi_app = FastPath(service, app.wsgi_app)  # type: ignore[method-assign]
    return app


def app_from_env() -> Flask:
    """Factory for the WSGI server's workers: the parent resolved the config.

    Everything alive now (modules, Flask, SQLAlchemy: ~50k objects) lives as
    long as the worker, so it is frozen out of the cyclic garbage collector:
    full collections then scan only the cache, which keeps their pauses (and
    so the p99) short; Nova's workers stall in exactly these collections.
    """
    import gc

    die_with_parent()
    setup_logging()
    app = create_app(ApiConfig.from_json(os.environ[RESOLVED_ENV]))
    gc.collect()
    gc.freeze()
    return app


def rsgi_from_env() -> Any:
    """Factory for ``serve api``'s workers: :class:`~metadata_content.server.front.Front`
    (RSGI) around :func:`app_from_env`'s app, so header names arrive unmapped."""
    from metadata_content.server.front import Front

    app = app_from_env()
    config = ApiConfig.from_json(os.environ[RESOLVED_ENV])
    return Front(app.wsgi_app, config.threads)
