"""The metadata service: identity -> cached tree -> answer, for one request.

Framework-free on purpose: :mod:`metadata_content.server.api` calls
:meth:`MetadataService.answer` twice over, from a WSGI fast path that may only
serve what is already rendered (``render=False``), and from the Flask view
for everything else. Both therefore decide identity, tokens and statuses in
the same code.
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from metadata_content.render.tree import READ_METHODS, TOKEN_NOT_ALLOWED, Answer, lookup_without_instance
from metadata_content.server import identity as ident
from metadata_content.server.cache import Entry, RenderCache
from metadata_content.server.config import ApiConfig, ConfigError, read_secret
from metadata_content.server.metrics import METRICS_DIR_ENV, Metrics
from metadata_content.server.runtime import TEXT, UNKNOWN_ERROR, AccessLog, Refusal, Reply
from metadata_content.store import PASSWORD_MAX, Store, unavailable_reason

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance

log = logging.getLogger("configdrive.api")
STORE_UNAVAILABLE = "The metadata store is unavailable. Please try your request again."
EARLY_MAX = 512  # (path, method) answers remembered before identity: every real path fits
REASONS = {status.value: status.phrase for status in HTTPStatus}


def build_stored(data: dict[str, Any], source: str) -> Instance:
    """The instance of a stored spec, which the store only accepted validated:
    checking it again would be ~90% of a cache miss. (The spec module is
    imported on the first miss, not with the service.)"""
    from metadata_content.spec import instance_from_data

    return instance_from_data(data, source, validated=True)


class Fallback(Exception):
    """The fast path cannot answer without rendering or a body: hand over to Flask."""


class MetadataService:
    """Everything one worker needs to answer metadata requests."""

    def __init__(self, config: ApiConfig, store: Store | None = None):
        from metadata_content.server.vendordata import ask_targets, load_static

        self.config = config
        self.store = store or Store(config.store_url, config.data_dir)
        self.secret = b""  # direct mode checks no signature
        if config.mode == "proxy":  # never accept signatures made with an empty key
            if not config.secret_file:
                raise ConfigError("proxy mode needs the shared secret: give --secret-file")
            self.secret = read_secret(config.secret_file)
        self.trusted = ident.TrustedProxies(config.trusted_proxies)
        targets = config.vendordata_dynamic_targets

        def vendor_data2(instance: Any) -> Any:
            if not targets:
                return None
            return functools.partial(ask_targets, instance, targets, config.vendordata_dynamic_timeout,
                                     config.vendordata_dynamic_failure_fatal)

        self.cache = RenderCache(self.store, config.cache_ttl, build_stored,
                                 static_vendor_data=load_static(config.vendordata_file),
                                 vendor_data2=vendor_data2, max_entries=config.cache_max_instances,
                                 refetch_on_expiry=bool(targets))
        self.tokens = ident.Tokens(bytes.fromhex(self.store.setting("imds_token_key")))
        self._early: OrderedDict[tuple[str, str], Answer | None] = OrderedDict()
        # request ids: a random per-worker prefix and a counter (os.urandom per
        # request would release the GIL, a measurable cost under load)
        self._rid_prefix = f"req-{os.urandom(4).hex()}-"
        self._rid_counter = itertools.count(1)
        self.metrics = Metrics(os.environ.get(METRICS_DIR_ENV))
        self.metrics.cache_source = lambda: (self.cache.hits, self.cache.misses)
        self.access = AccessLog(config.access_log)

    # -- the entry point -----------------------------------------------------

    def answer(self, environ: dict[str, Any], render: bool,
               read_body: Callable[[int], bytes] | None = None) -> Reply | None:
        """The reply to a request, or None (fast path only) when it needs the full path."""
        if "configdrive.request_id" not in environ:
            environ["configdrive.request_id"] = f"{self._rid_prefix}{next(self._rid_counter):08x}"
        try:
            return self._answer(environ, render, read_body)
        except Fallback:
            return None
        except Refusal as exc:
            if exc.log:  # the claimed id and the peer, never the signature
                log.warning("%s %s %s from %s", environ["configdrive.request_id"], exc.message, exc.log,
                            environ.get("HTTP_X_FORWARDED_FOR") or environ.get("REMOTE_ADDR"))
            return exc.reply()
        except Exception as exc:
            reason = unavailable_reason(exc)
            if reason is not None:  # locked, full, corrupt, away: one line, and the guest may retry
                log.error("%s store unavailable: %s", environ["configdrive.request_id"], reason)
                return Refusal(503, STORE_UNAVAILABLE).reply()
            log.exception("%s metadata request failed: %s %r", environ["configdrive.request_id"],
                          environ.get("REQUEST_METHOD"), str(environ.get("PATH_INFO"))[:256])
            return Refusal(500, UNKNOWN_ERROR).reply()

    def finish(self, reply: Reply, environ: dict[str, Any], started: float) -> None:
        """Access log line and metrics for a reply that is being sent."""
        elapsed = time.perf_counter() - started
        self.access.write(environ["configdrive.request_id"], reply.instance_id, environ.get("REQUEST_METHOD", "?"),
                          environ.get("PATH_INFO", ""), reply.status, elapsed)
        self.metrics.observe(reply.status, reply.path_class, elapsed)

    # -- steps -----------------------------------------------------------------

    def _answer(self, environ: dict[str, Any], render: bool,
                read_body: Callable[[int], bytes] | None) -> Reply:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO") or "/"
        if not render and method not in READ_METHODS:
            raise Fallback
        self.cache.refresh()
        if path.rstrip("/") == ident.TOKEN_PATH:
            return self._token(environ, method, render)
        token = environ.get(ident.TOKEN_HEADER)
        if token is None:
            if self.config.imds_v2 == "required":
                return Reply(401, b"", path_class="token")
            key = (path, method)
            if key in self._early:
                early = self._early[key]
                self._early.move_to_end(key)
            else:  # the tree decides what is answered before identification; remember it per path
                early = lookup_without_instance(path, method)
                self._early[key] = early
                if len(self._early) > EARLY_MAX:  # unidentified clients choose these keys: bounded LRU
                    self._early.popitem(last=False)
            if early is not None:
                return self._reply(early, "-", "root")
        uuid, entry = self._identify(environ, render)
        if token is not None and not self.tokens.valid(token, uuid):
            return Reply(401, b"", instance_id=uuid, path_class="token")
        path_class = "openstack" if path.startswith("/openstack") else "ec2"
        if method not in READ_METHODS:
            answer = entry.tree.lookup(path, method)
            if answer.password and method == "POST":
                assert read_body is not None
                return self._set_password(environ, uuid, read_body)
            return self._reply(answer, uuid, path_class)
        cached = entry.lookup(path)
        if cached.password:
            return Reply(200, (self.store.get_password(uuid) or "").encode(), cached.content_type,
                         uuid, path_class="password")
        if cached.requester:  # Nova's local-ipv4 for an instance without a fixed IPv4
            return Reply(200, self._requester(environ).encode(), cached.content_type, uuid, path_class=path_class)
        return Reply(cached.status, cached.render(), cached.content_type, uuid, path_class=path_class)

    def _requester(self, environ: dict[str, Any]) -> str:
        """The asking guest's address: in proxy mode the X-Forwarded-For entry the agent's
        haproxy appended (the last), in direct mode the client address identity used."""
        if self.config.mode == "proxy":
            chain = ident.forwarded_chain(environ)
            return ident.plain_address(chain[-1]) if chain else ""
        return ident.plain_address(self.trusted.client_address(environ))

    def _reply(self, answer: Answer, uuid: str, path_class: str) -> Reply:
        allow = (("Allow", answer.allow),) if answer.allow else ()  # a 405 names what the path takes
        return Reply(answer.status, answer.body, answer.content_type, uuid, headers=allow, path_class=path_class)

    def _identify(self, environ: dict[str, Any], render: bool) -> tuple[str, Entry]:
        """(instance uuid, cache entry) for the requester, or a Refusal (400/403/404/500)."""
        if self.config.mode == "proxy":
            claim = ident.proxy_claim(environ, self.secret)
            uuid, tenant = claim.instance_id, claim.tenant_id
        else:
            address = self.trusted.client_address(environ)
            if not render and address not in self.cache.addresses:
                raise Fallback
            found = self.cache.by_address(address)
            if not found:
                raise Refusal(404, f"No instance found for address {address}.")
            if len(found) > 1:
                log.error("%s address %s matches %d instances: %s", environ["configdrive.request_id"],
                          address, len(found), ", ".join(found))
                raise Refusal(500, UNKNOWN_ERROR)
            uuid, tenant = found[0], None
        entry = self._entry(uuid, render)
        if entry is None:
            raise Refusal(404, "Not Found")
        if tenant is not None and entry.project_id != tenant:  # no project: the agent sends ""
            log.warning("%s tenant %r does not own instance %s", environ["configdrive.request_id"], tenant, uuid)
            raise Refusal(404, "Not Found")
        return uuid, entry

    def _entry(self, uuid: str, render: bool) -> Entry | None:
        """The cached entry, rendered on a miss only when *render*: one cache
        lookup either way (the fast path hands a miss over to Flask)."""
        if render:
            return self.cache.get(uuid)
        entry = self.cache.peek(uuid)
        if entry is None:
            raise Fallback
        return entry

    def _token(self, environ: dict[str, Any], method: str, render: bool) -> Reply:
        """IMDSv2 ``PUT /latest/api/token``."""
        if method != "PUT":
            return self._reply(TOKEN_NOT_ALLOWED, "-", "token")
        if ident.token_put_refused(environ, self.config.mode, self.trusted):
            return Reply(403, b"Token requests relayed with X-Forwarded-For are refused.",
                         path_class="token")
        uuid, _entry = self._identify(environ, render)
        ttl = ident.parse_token_ttl(environ)
        return Reply(200, self.tokens.issue(uuid, ttl).encode(), TEXT, uuid,
                     (("X-aws-ec2-metadata-token-ttl-seconds", str(ttl)),), path_class="token")

    def _set_password(self, environ: dict[str, Any], uuid: str,
                      read_body: Callable[[int], bytes]) -> Reply:
        """Nova's rules: set once (409 first), at most 1020 bytes; plus a clean 4xx
        for a missing Content-Length or a body that is not UTF-8."""
        def no(status: int, message: str) -> Reply:
            return Reply(status, message.encode(), TEXT, uuid, path_class="password")

        if self.store.get_password(uuid):
            return no(409, "The password is already set.")
        length = environ.get("CONTENT_LENGTH") or ""
        if not length:
            return no(411, "Content-Length is required.")
        if not (length.isascii() and length.isdigit()):
            return no(400, "Content-Length is not a number.")
        if int(length) > PASSWORD_MAX:
            return no(400, "Request is too large.")
        body = read_body(int(length))
        if len(body) > PASSWORD_MAX:
            return no(400, "Request is too large.")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return no(400, "The password must be UTF-8 text.")
        if not self.store.set_password_once(uuid, text):
            return no(409, "The password is already set.")
        log.info("%s password set for %s", environ["configdrive.request_id"], uuid)
        return Reply(200, b"", TEXT, uuid, path_class="password")
