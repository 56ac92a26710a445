"""The per-worker rendering cache: instance -> rendered answers as bytes.

An entry holds the instance's :class:`MetadataTree` and the answers already
looked up, keyed by the raw request path. It is dropped when the store's
change log names the instance, whichever process wrote it
(:class:`ChangeWatcher`, asked at most once per store.POLL_INTERVAL). After
the TTL (15 s by default, as Nova) it is revalidated: one indexed read of
the instance's version counter; only a
changed instance, or one whose vendor_data2 targets must be asked again, is
rendered anew (a render costs milliseconds, the check a fraction of one).

random_seed stays fresh per request although bodies are cached: the tree is
built with a private random sentinel seed; a cached body containing the
sentinel's base64 is kept as the two byte strings around it, and each request
splices in the base64 of 512 new random bytes (about 5 us). A spec that pins
its seed is served as rendered.
"""
from __future__ import annotations

import base64
import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metadata_content.model import Instance, replace
from metadata_content.render.tree import Answer, MetadataTree
from metadata_content.store import ChangeWatcher, Store

MAX_PATHS = 64  # answers cached per instance: bounds memory against path fuzzing


@dataclass(frozen=True)
class Cached:
    """A cached GET answer; ``tail`` is set when the body carries random_seed."""

    status: int
    content_type: str
    body: bytes
    password: bool = False
    tail: bytes | None = None
    requester: bool = False  # the body is the asker's address (see Answer.requester)

    def render(self) -> bytes:
        if self.tail is None:
            return self.body
        return self.body + base64.b64encode(os.urandom(512)) + self.tail


@dataclass
class Entry:
    instance: Instance
    tree: MetadataTree
    version: int
    expires: float
    sentinel: bytes | None
    answers: dict[str, Cached] = field(default_factory=dict)

    @property
    def project_id(self) -> str:
        return self.instance.project_id or ""

    def lookup(self, path: str) -> Cached:
        """The GET answer for *path*, rendered once per entry."""
        hit = self.answers.get(path)
        if hit is not None:
            return hit
        answer = self.tree.lookup(path, "GET")
        cached = _split(answer, self.sentinel)
        if len(self.answers) < MAX_PATHS:
            self.answers[path] = cached
        return cached


def _split(answer: Answer, sentinel: bytes | None) -> Cached:
    if sentinel is not None and answer.status == 200:
        head, found, tail = answer.body.partition(sentinel)
        if found and sentinel not in tail:
            return Cached(answer.status, answer.content_type, head, answer.password, tail)
    return Cached(answer.status, answer.content_type, answer.body, answer.password, requester=answer.requester)


class RenderCache:
    """uuid -> :class:`Entry`, plus client address -> uuid for direct mode."""

    def __init__(self, store: Store, ttl: float, build: Callable[[dict[str, Any], str], Instance],
                 static_vendor_data: dict[str, Any] | None = None,
                 vendor_data2: Callable[[Instance], Callable[[], dict[str, Any]] | None] = lambda i: None,
                 max_entries: int = 20_000, refetch_on_expiry: bool = False):
        self.store = store
        self.ttl = ttl
        self.build = build
        self.static_vendor_data = static_vendor_data
        self.vendor_data2 = vendor_data2
        self.max_entries = max_entries
        self.watcher = ChangeWatcher(store)
        # oldest first, so the first item is the one to evict when full
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.addresses: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self.refetch_on_expiry = refetch_on_expiry  # dynamic vendor data: re-ask targets per TTL
        self.hits = 0
        self.misses = 0

    def refresh(self) -> None:
        """Forget whatever the store says changed since the last poll."""
        if not self.watcher.due():
            return
        changed = self.watcher.poll()
        if changed is None:
            self.entries.clear()
            self.addresses.clear()
        elif changed:
            for uuid in changed:
                self.entries.pop(uuid, None)
            self.addresses.clear()  # ports may have moved

    def peek(self, uuid: str) -> Entry | None:
        """A live entry without rendering anything (the fast path), else None.
        An expired one is renewed when the store still has the same version, and
        dropped otherwise, so the version is not asked again until it is rendered."""
        entry = self.entries.get(uuid)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            if self.refetch_on_expiry or self.watcher.version(uuid) != entry.version:
                self.entries.pop(uuid, None)
                return None
            entry.expires = time.monotonic() + self.ttl
        self.hits += 1
        return entry

    def get(self, uuid: str) -> Entry | None:
        """The instance's entry, rendering it from the store on a miss; None if unknown."""
        entry = self.peek(uuid)
        if entry is not None:
            return entry
        self.misses += 1
        record = self.store.get(uuid)
        if record is None:
            self.entries.pop(uuid, None)
            return None
        instance = self.build(record.spec, f"store:{uuid}")
        if self.static_vendor_data is not None and not instance.vendor_data:
            instance = replace(instance, vendor_data=self.static_vendor_data)
        sentinel_seed = None if instance.random_seed else os.urandom(512)
        tree = MetadataTree(instance, delivery="http", random_seed=sentinel_seed,
                            vendor_data2=self.vendor_data2(instance))
        sentinel = base64.b64encode(sentinel_seed) if sentinel_seed else None
        entry = Entry(instance, tree, record.version, time.monotonic() + self.ttl, sentinel)
        _put(self.entries, uuid, entry, self.max_entries)
        return entry

    def by_address(self, address: str) -> list[str]:
        """Instance uuids owning fixed IP *address* (direct mode), cached for the TTL."""
        now = time.monotonic()
        hit = self.addresses.get(address)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = [uuid for uuid, _project in self.store.find_by_address(address)]
        _put(self.addresses, address, (now + self.ttl, found), self.max_entries)
        return found


def _put(cache: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    """Store *value*, evicting the oldest entries to stay within *limit*. Unlocked,
    as worker threads drop entries unlocked anyway: a race costs an entry over
    the limit at most, or a KeyError from a cache another thread just emptied."""
    while len(cache) >= limit and cache:
        with contextlib.suppress(KeyError):
            cache.popitem(last=False)
    cache[key] = value
