"""Request metrics, Prometheus text format, summed over worker processes.

Each worker counts in memory (a few dict increments per request) and writes
a JSON snapshot to a shared directory at most once a second; the admin
server, which the metadata chain cannot reach, adds the snapshots of live
workers up when scraped. A scrape may lag a second behind.
"""
from __future__ import annotations

import bisect
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from metadata_content.chain.processes import alive

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
METRICS_DIR_ENV = "CONFIGDRIVE_METRICS_DIR"


class Metrics:
    """One worker's counters."""

    def __init__(self, directory: str | None = None, interval: float = 1.0):
        self.requests: dict[tuple[int, str], int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.count = 0
        self.cache_source: Any = None  # () -> (hits, misses), set by the service
        self.directory = Path(directory) if directory else None
        self.interval = interval
        self._thread: threading.Thread | None = None
        self._written: tuple[int, ...] = ()

    def observe(self, status: int, path_class: str, seconds: float) -> None:
        key = (status, path_class)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1  # first bound >= seconds, else +Inf
        self.latency_sum += seconds
        self.count += 1
        if self.directory is not None and self._thread is None:
            self._start()

    def snapshot(self) -> dict[str, Any]:
        return {"requests": [[s, c, n] for (s, c), n in list(self.requests.items())],
                "buckets": list(self.buckets), "sum": self.latency_sum, "count": self.count,
                "cache": dict(zip(("hit", "miss"), self.cache_source() if self.cache_source else (0, 0), strict=False))}

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="metrics-writer", daemon=True)
        self._thread.start()

    def _writer(self) -> None:
        assert self.directory is not None
        target = self.directory / f"worker-{os.getpid()}.json"
        while True:
            state = (self.count, *(self.cache_source() if self.cache_source else ()))
            if state != self._written:
                self._written = state
                tmp = target.with_suffix(".tmp")
                try:
                    tmp.write_text(json.dumps(self.snapshot()))
                    tmp.replace(target)
                except OSError:
                    pass
            time.sleep(self.interval)



def collect(directory: str | Path) -> dict[str, Any]:
    """The sum of every live worker's snapshot."""
    total: dict[str, Any] = {"requests": {}, "buckets": [0] * (len(BUCKETS) + 1), "sum": 0.0,
                             "count": 0, "cache": {"hit": 0, "miss": 0}, "workers": 0}
    for path in Path(directory).glob("worker-*.json"):
        try:
            pid = int(path.stem.split("-", 1)[1])
            snap = json.loads(path.read_text())
        except (ValueError, OSError):
            continue
        if not alive(pid):
            continue
        total["workers"] += 1
        for status, cls, n in snap["requests"]:
            total["requests"][(status, cls)] = total["requests"].get((status, cls), 0) + n
        total["buckets"] = [a + b for a, b in zip(total["buckets"], snap["buckets"], strict=False)]
        total["sum"] += snap["sum"]
        total["count"] += snap["count"]
        for k in ("hit", "miss"):
            total["cache"][k] += snap["cache"].get(k, 0)
    return total


def render(total: dict[str, Any], instances: int | None = None) -> bytes:
    """Prometheus text exposition format 0.0.4."""
    out = ["# HELP configdrive_api_requests_total Metadata requests by status and path class.",
           "# TYPE configdrive_api_requests_total counter"]
    for (status, cls), n in sorted(total["requests"].items()):
        out.append(f'configdrive_api_requests_total{{status="{status}",path_class="{cls}"}} {n}')
    out += ["# HELP configdrive_api_request_duration_seconds Time to answer a metadata request.",
            "# TYPE configdrive_api_request_duration_seconds histogram"]
    running = 0
    for bound, n in zip((*BUCKETS, "+Inf"), total["buckets"], strict=False):
        running += n
        out.append(f'configdrive_api_request_duration_seconds_bucket{{le="{bound}"}} {running}')
    out.append(f"configdrive_api_request_duration_seconds_sum {total['sum']:.6f}")
    out.append(f"configdrive_api_request_duration_seconds_count {total['count']}")
    out += ["# HELP configdrive_api_cache_total Rendering cache lookups by result.",
            "# TYPE configdrive_api_cache_total counter"]
    for k in ("hit", "miss"):
        out.append(f'configdrive_api_cache_total{{result="{k}"}} {total["cache"][k]}')
    out += ["# HELP configdrive_api_workers Worker processes reporting.", "# TYPE configdrive_api_workers gauge",
            f"configdrive_api_workers {total['workers']}"]
    if instances is not None:
        out += ["# HELP configdrive_instances Instances registered in the store.",
                "# TYPE configdrive_instances gauge", f"configdrive_instances {instances}"]
    return ("\n".join(out) + "\n").encode()
