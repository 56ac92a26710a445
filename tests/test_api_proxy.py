"""The metadata API in proxy mode, as a real granian process on 127.0.0.1:
every path, every SPEC section 6 status, the password service, IMDSv2, the
admin endpoints, the access log and cross-worker cache invalidation."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata_content.render.tree import MetadataTree
from metadata_content.spec import load_instance
from tests.support.api_support import (
    MINIMAL,
    RICH,
    RICH_PROJECT,
    SAMPLES,
    SECRET,
    WEB,
    WEB_PROJECT,
    WIN,
    WIN_PROJECT,
    all_paths,
    prepare,
    signed,
)
from tests.support.apiserver import ApiServer, Response, api_server, cli


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("api-proxy")
    data, secret = prepare(tmp, "rich", "webserver", "windows", "minimal")
    return tmp, data, secret


@pytest.fixture(scope="module")
def api(env: tuple[Path, Path, Path]) -> Iterator[ApiServer]:
    tmp, data, secret = env
    with api_server(tmp, "--data-dir", str(data), "--secret-file", str(secret), "--cache-ttl", "600") as server:
        yield server


def get(api: ApiServer, path: str, instance: str = RICH, tenant: str | None = RICH_PROJECT, **extra: str):
    return api.request("GET", path, signed(instance, tenant, **extra))


def test_every_tree_path_matches_the_model(api: ApiServer) -> None:
    tree = MetadataTree(load_instance(SAMPLES / "rich.yaml"))  # the rich sample pins its random seed
    paths = all_paths(tree)
    assert len(paths) > 300
    for path in [*paths, "/ec2/latest/meta-data/hostname", "/latest/meta-data/?x=1", "/openstack/latest/"]:
        want = tree.lookup(path)
        got = get(api, path)
        assert got.status == 200, path
        body = b"" if want.password else want.body
        assert got.body == body, path
        assert got.headers["content-type"] == want.content_type, path


def test_random_seed_is_fresh_per_request(api: ApiServer) -> None:
    """The webserver sample pins no seed: cached bodies still carry a new one each time."""
    a = json.loads(get(api, "/openstack/latest/meta_data.json", WEB, WEB_PROJECT).body)
    b = json.loads(get(api, "/openstack/latest/meta_data.json", WEB, WEB_PROJECT).body)
    assert a["random_seed"] != b["random_seed"]
    assert len(base64.b64decode(a["random_seed"])) == 512
    a.pop("random_seed"), b.pop("random_seed")
    assert a == b and a["uuid"] == WEB


def test_head_and_root_listing(api: ApiServer) -> None:
    head = api.request("HEAD", "/openstack/latest/meta_data.json", signed(RICH, RICH_PROJECT))
    full = get(api, "/openstack/latest/meta_data.json")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(full.body))
    for path in ("/", "/ec2", "/ec2/"):  # answered before any identification, as Nova does for /
        root = api.request("GET", path)
        assert root.status == 200 and root.body.split(b"\n")[-1] == b"latest"


@pytest.mark.parametrize(("drop", "message"), [
    ("X-Instance-ID", b"X-Instance-ID header is missing from request."),
    ("X-Instance-ID-Signature", b"X-Instance-ID-Signature header is missing from request."),
    ("X-Tenant-ID", b"X-Tenant-ID header is missing from request."),
])
def test_missing_header_is_400(api: ApiServer, drop: str, message: bytes) -> None:
    headers = signed(RICH, RICH_PROJECT)
    del headers[drop]
    resp = api.request("GET", "/latest/meta-data/hostname", headers)
    assert (resp.status, resp.body) == (400, message)


def test_failures_of_section_6(api: ApiServer) -> None:
    bad_sig = signed(RICH, RICH_PROJECT, **{"X-Instance-ID-Signature": "0" * 64})
    resp = api.request("GET", "/latest/meta-data/hostname", bad_sig)
    assert (resp.status, resp.body) == (403, b"Invalid proxy request signature.")
    # a signature for another instance is a bad signature too
    other = signed(RICH, RICH_PROJECT, **{"X-Instance-ID-Signature": signed(WEB, None)["X-Instance-ID-Signature"]})
    assert api.request("GET", "/latest/meta-data/hostname", other).status == 403
    unknown = "00000000-0000-4000-8000-000000000000"
    assert get(api, "/latest/meta-data/hostname", unknown, RICH_PROJECT).status == 404
    assert get(api, "/latest/meta-data/hostname", RICH, WEB_PROJECT).status == 404  # wrong tenant
    assert get(api, "/latest/meta-data/hostname", MINIMAL, "").status == 200  # no project: empty tenant
    assert get(api, "/latest/meta-data/hostname", MINIMAL, "x").status == 404
    assert get(api, "/latest/meta-data/no-such-key").status == 404
    assert get(api, "/openstack/2099-01-01/meta_data.json").status == 404
    assert get(api, "/latest/meta-data/hostname/x").status == 404  # Nova: 500
    assert get(api, "/openstack/latest/meta_data.json/x").status == 404
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "POST"):
        resp = api.request(method, "/openstack/latest/meta_data.json", signed(RICH, RICH_PROJECT), body=b"")
        assert resp.status == 405 and _allow(resp) == "GET, HEAD", method  # RFC 9110: Allow with a 405
    resp = api.request("PUT", "/openstack/latest/password", signed(RICH, RICH_PROJECT), body=b"")
    assert resp.status == 405 and _allow(resp) == "GET, HEAD, POST"
    resp = api.request("DELETE", "/", signed(RICH, RICH_PROJECT))
    assert resp.status == 405 and _allow(resp) == "GET, HEAD"


def _allow(resp: Response) -> str | None:
    return {name.lower(): value for name, value in resp.headers.items()}.get("allow")


def test_lookup_error_is_500(env: tuple[Path, Path, Path], api: ApiServer) -> None:
    """A stored spec that no longer builds is the API's fault: Nova's 500, not a crash."""
    _tmp, data, _secret = env
    db = sqlite3.connect(data / "store.db")
    db.execute("UPDATE instances SET spec = ? WHERE uuid = ?", (json.dumps({"uuid": MINIMAL}), MINIMAL))
    db.execute("INSERT INTO changes (uuid) VALUES (?)", (MINIMAL,))
    db.commit()
    db.close()
    try:
        resp = get(api, "/latest/meta-data/hostname", MINIMAL, "")
        assert resp.status == 500
        assert resp.body == b"An unknown error has occurred. Please try your request again."
    finally:
        cli("instances", "--data-dir", str(data), "update", str(SAMPLES / "minimal.yaml"))
    assert get(api, "/latest/meta-data/hostname", MINIMAL, "").body == b"minimal.novalocal"


def test_password_once_under_concurrency_and_across_restart(env: tuple[Path, Path, Path], api: ApiServer) -> None:
    tmp, data, secret = env
    path = "/openstack/latest/password"
    statuses: dict[int, int] = {}
    barrier = threading.Barrier(50)

    def post(i: int) -> None:
        barrier.wait(timeout=30)
        statuses[i] = api.request("POST", path, signed(WIN, WIN_PROJECT), body=f"secret-{i}".encode()).status

    threads = [threading.Thread(target=post, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses.values()) == [200] + [409] * 49
    winner = next(i for i, s in statuses.items() if s == 200)
    assert get(api, path, WIN, WIN_PROJECT).body == f"secret-{winner}".encode()
    # a second POST is refused before its size is looked at
    assert api.request("POST", path, signed(WIN, WIN_PROJECT), body=b"x" * 5000).status == 409
    with api_server(tmp, "--data-dir", str(data), "--secret-file", str(secret), workers=1) as again:
        assert again.request("GET", path, signed(WIN, WIN_PROJECT)).body == f"secret-{winner}".encode()


def test_password_size_and_body_rules(api: ApiServer) -> None:
    path = "/openstack/2013-04-04/password"
    headers = signed(RICH, RICH_PROJECT)
    too_big = api.request("POST", path, headers, body=b"x" * 1021)
    assert (too_big.status, too_big.body) == (400, b"Request is too large.")
    assert api.request("POST", path, headers, body=b"\xff\xfe").status == 400  # not UTF-8
    sig = headers["X-Instance-ID-Signature"]
    no_length = api.raw(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Instance-ID: {RICH}\r\nX-Tenant-ID: {RICH_PROJECT}\r\n"
                        f"X-Instance-ID-Signature: {sig}\r\nConnection: close\r\n\r\n".encode())
    assert no_length.startswith(b"HTTP/1.1 411"), no_length[:200]
    chunked = api.raw(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Instance-ID: {RICH}\r\nX-Tenant-ID: {RICH_PROJECT}\r\n"
                      f"X-Instance-ID-Signature: {sig}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      "3\r\nabc\r\n0\r\n\r\n".encode())
    assert chunked.split(b" ")[1][:1] == b"4", chunked[:200]  # a clean 4xx
    assert get(api, path).body == b""  # nothing was stored
    exact = api.request("POST", path, headers, body="é".encode() * 510)  # 1020 bytes
    assert exact.status == 200 and get(api, path).body == "é".encode() * 510
    cli("instances", "--data-dir", str(Path(api.log).parent / "data"), "clear-password", RICH)
    assert get(api, path).body == b""


def test_imds_v2_tokens(api: ApiServer) -> None:
    token_path = "/latest/api/token"
    put = api.request("PUT", token_path, signed(RICH, RICH_PROJECT, **{"X-aws-ec2-metadata-token-ttl-seconds": "60"}))
    assert put.status == 200 and put.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "60"
    token = put.body.decode()
    ok = get(api, "/latest/meta-data/instance-id", **{"X-aws-ec2-metadata-token": token})
    assert ok.status == 200
    assert get(api, "/latest/meta-data/instance-id", **{"X-aws-ec2-metadata-token": token + "0"}).status == 401
    assert get(api, "/", **{"X-aws-ec2-metadata-token": "garbage"}).status == 401
    # bound to the instance it was issued to
    assert get(api, "/latest/meta-data/", WEB, WEB_PROJECT, **{"X-aws-ec2-metadata-token": token}).status == 401
    for ttl in ("0", "21601", "abc", "²"):
        bad = api.request("PUT", token_path,
                          signed(RICH, RICH_PROJECT, **{"X-aws-ec2-metadata-token-ttl-seconds": ttl}))
        assert bad.status == 400, ttl
    assert api.request("PUT", token_path, signed(RICH, RICH_PROJECT)).status == 400
    relayed = api.request("PUT", token_path, signed(RICH, RICH_PROJECT, **{
        "X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.9.9.9, 192.0.2.10"}))
    assert relayed.status == 403
    chained = api.request("PUT", token_path, signed(RICH, RICH_PROJECT, **{
        "X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "192.0.2.10"}))
    assert chained.status == 200  # the one entry our own haproxy adds
    assert get(api, token_path).status == 405 and _allow(get(api, token_path)) == "PUT"
    short = api.request("PUT", token_path, signed(RICH, RICH_PROJECT, **{"X-aws-ec2-metadata-token-ttl-seconds": "1"}))
    time.sleep(2.1)
    assert get(api, "/latest/meta-data/", **{"X-aws-ec2-metadata-token": short.body.decode()}).status == 401


def test_imds_v2_required(env: tuple[Path, Path, Path]) -> None:
    tmp, data, secret = env
    with api_server(tmp, "--data-dir", str(data), "--secret-file", str(secret), "--imds-v2", "required",
                    workers=1) as api:
        assert get(api, "/latest/meta-data/").status == 401
        assert api.request("GET", "/").status == 401
        put = api.request("PUT", "/latest/api/token",
                          signed(RICH, RICH_PROJECT, **{"X-aws-ec2-metadata-token-ttl-seconds": "30"}))
        token = put.body.decode()
        assert get(api, "/latest/meta-data/hostname", **{"X-aws-ec2-metadata-token": token}).body == b"db-1.example.org"


def test_admin_endpoints_are_separate(api: ApiServer) -> None:
    health = api.admin("/healthz")
    assert health.status == 200 and json.loads(health.body)["status"] == "ok"
    get(api, "/latest/meta-data/hostname")
    deadline = time.monotonic() + 10
    while True:
        text = api.admin("/metrics").body.decode()
        if 'configdrive_api_requests_total{status="200",path_class="ec2"}' in text:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert "configdrive_api_request_duration_seconds_bucket" in text
    assert 'configdrive_api_cache_total{result="hit"}' in text and "configdrive_instances 4" in text
    for path in ("/healthz", "/metrics"):  # not reachable through the metadata port
        resp = api.request("GET", path)
        assert resp.status != 200 and b"configdrive_api" not in resp.body


def test_access_log_has_ids_but_no_secrets(api: ApiServer) -> None:
    resp = get(api, "/openstack/latest/vendor_data.json")
    rid = resp.headers["x-openstack-request-id"]
    api.request("GET", "/latest/", signed(RICH, RICH_PROJECT, **{"X-Instance-ID-Signature": "f" * 64}))
    deadline = time.monotonic() + 5
    while rid not in api.log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    log = api.log.read_text()
    line = next(x for x in log.splitlines() if rid in x)
    assert f"instance={RICH}" in line and "'/openstack/latest/vendor_data.json' 200" in line and "ms" in line
    assert signed(RICH, None)["X-Instance-ID-Signature"] not in log
    assert "f" * 64 not in log and SECRET.decode() not in log


def test_cache_invalidated_across_workers(env: tuple[Path, Path, Path], api: ApiServer) -> None:
    """TTL is 600 s here: only the store's change log can make workers re-render.

    Each worker's own request count (its metrics snapshot) shows that both
    workers answered with the new name after the change, not just one.
    """
    _tmp, data, _secret = env
    for _ in range(20):  # fresh connections spread over both workers: both cache the old name
        assert get(api, "/latest/meta-data/hostname", WEB, WEB_PROJECT).body == b"web-1.novalocal"
    before = _settled_counts(api)
    changed = data.parent / "web-renamed.json"
    spec = json.loads(cli("instances", "--data-dir", str(data), "show", WEB).stdout)
    spec["hostname"] = "web-renamed"
    changed.write_text(json.dumps(spec))
    cli("instances", "--data-dir", str(data), "update", str(changed))
    answered: set[int] = set()
    for sent in range(1, 401):  # until both workers have answered since the change
        assert get(api, "/latest/meta-data/hostname", WEB, WEB_PROJECT).body == b"web-renamed.novalocal"
        if sent % 20 == 0:
            after = _settled_counts(api, at_least=sum(before.values()) + sent)
            answered = {pid for pid, n in after.items() if n > before.get(pid, 0)}
            if len(answered) == 2:
                break
    assert len(answered) == 2, f"only workers {answered} answered after the change"
    cli("instances", "--data-dir", str(data), "update", str(SAMPLES / "webserver.yaml"))
    assert get(api, "/latest/meta-data/hostname", WEB, WEB_PROJECT).body == b"web-1.novalocal"


def _settled_counts(api: ApiServer, at_least: int = 0) -> dict[int, int]:
    """Requests each live worker has counted, from the snapshot it writes at most
    once a second: read once they add up to *at_least* and hold still for longer."""
    def read() -> dict[int, int]:
        counts = {}
        for pid in _workers(api):
            for snapshot in Path(tempfile.gettempdir()).glob(f"configdrive-metrics-*/worker-{pid}.json"):
                with contextlib.suppress(OSError, ValueError):
                    counts[pid] = json.loads(snapshot.read_text())["count"]
        return counts

    deadline = time.monotonic() + 15
    last, since = read(), time.monotonic()
    while True:
        time.sleep(0.2)
        counts, now = read(), time.monotonic()
        if counts != last:
            last, since = counts, now
        elif sum(counts.values()) >= at_least and now - since > 1.3:
            return counts
        assert now < deadline, f"worker counts {counts}, expected at least {at_least} in all"


def test_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    proc = cli("serve", "api", "--data-dir", str(tmp_path), "--secret-file", str(empty), "--bind",
               "127.0.0.1:1", check=False)
    assert proc.returncode == 2 and "is empty" in proc.stderr
    proc = cli("serve", "api", "--data-dir", str(tmp_path), "--bind", "127.0.0.1:1", check=False)
    assert proc.returncode == 2 and "secret" in proc.stderr


@pytest.mark.parametrize(("content", "reason"), [(None, "No such file"), ("{", "Expecting"),
                                                 ("[]", "must be a JSON object")])
def test_refuses_to_start_with_a_bad_vendordata_file(tmp_path: Path, content: str | None, reason: str) -> None:
    secret, vendor = tmp_path / "secret", tmp_path / "vendor.json"
    secret.write_bytes(SECRET)
    if content is not None:
        vendor.write_text(content)
    proc = cli("serve", "api", "--data-dir", str(tmp_path), "--secret-file", str(secret), "--bind",
               "127.0.0.1:1", env={"CONFIGDRIVE_VENDORDATA_FILE": str(vendor)}, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and str(vendor) in proc.stderr and reason in proc.stderr


def test_sign_and_query_commands(env: tuple[Path, Path, Path], api: ApiServer) -> None:
    _tmp, data, secret = env
    sig = cli("sign", RICH, "--secret-file", str(secret)).stdout.strip()
    assert sig == signed(RICH, None)["X-Instance-ID-Signature"]
    out = cli("query", "--data-dir", str(data), "--secret-file", str(secret), "--instance", RICH,
              "--api", api.url, "/latest/meta-data/hostname")
    assert out.stdout == "db-1.example.org" and out.stderr.strip() == "200"
    missing = cli("query", "--data-dir", str(data), "--secret-file", str(secret), "--instance", RICH,
                  "--api", api.url, "/latest/meta-data/nope", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == "404"


def test_ttl_revalidates_against_the_version_counter(env: tuple[Path, Path, Path]) -> None:
    """The change log is the fast path; the TTL is the safety net: a write that
    bypassed the log (here: by hand) is served once the TTL has passed."""
    tmp, data, secret = env
    with api_server(tmp, "--data-dir", str(data), "--secret-file", str(secret), "--cache-ttl", "1",
                    workers=1) as api:
        assert get(api, "/latest/meta-data/hostname", MINIMAL, "").body == b"minimal.novalocal"
        time.sleep(1.2)
        assert get(api, "/latest/meta-data/hostname", MINIMAL, "").body == b"minimal.novalocal"  # revalidated
        db = sqlite3.connect(data / "store.db")
        spec = json.loads(db.execute("SELECT spec FROM instances WHERE uuid = ?", (MINIMAL,)).fetchone()[0])
        spec["hostname"] = "sneaky"
        db.execute("UPDATE instances SET spec = ?, version = version + 1 WHERE uuid = ?", (json.dumps(spec), MINIMAL))
        db.commit()
        db.close()
        assert get(api, "/latest/meta-data/hostname", MINIMAL, "").body == b"minimal.novalocal"  # within the TTL
        time.sleep(1.2)
        assert get(api, "/latest/meta-data/hostname", MINIMAL, "").body == b"sneaky.novalocal"
    cli("instances", "--data-dir", str(data), "update", str(SAMPLES / "minimal.yaml"))


def test_stale_entry_is_dropped_after_one_version_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An expired entry is renewed while the version holds; once it moved, the
    first peek drops the entry, so later peeks do not ask the store again."""
    import copy

    from metadata_content.server.cache import RenderCache
    from metadata_content.server.service import build_stored
    from metadata_content.spec import instance_from_data, read_spec
    from metadata_content.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        data = read_spec(SAMPLES / "minimal.yaml")
        store.add([(data, instance_from_data(copy.deepcopy(data), "minimal"))])
        cache = RenderCache(store, 600, build_stored)
        asked: list[str] = []
        version = cache.watcher.version
        monkeypatch.setattr(cache.watcher, "version", lambda uuid: asked.append(uuid) or version(uuid))
        entry = cache.get(MINIMAL)
        assert entry is not None
        entry.expires = 0
        assert cache.peek(MINIMAL) is entry and len(asked) == 1  # revalidated: same version
        store.update(data, instance_from_data(copy.deepcopy(data), "minimal"))
        entry.expires = 0
        assert cache.peek(MINIMAL) is None and len(asked) == 2
        assert cache.peek(MINIMAL) is None and len(asked) == 2 and MINIMAL not in cache.entries
        fresh = cache.get(MINIMAL)
        assert fresh is not None and fresh.version == 2 and len(asked) == 2
    finally:
        store.close()


def test_render_cache_eviction_keeps_the_bound(tmp_path: Path) -> None:
    import copy

    from metadata_content.server.cache import RenderCache
    from metadata_content.server.service import build_stored
    from metadata_content.spec import instance_from_data, read_spec
    from metadata_content.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        specs = [read_spec(SAMPLES / f"{name}.yaml") for name in ("minimal", "windows")]
        store.add([(d, instance_from_data(copy.deepcopy(d), "s")) for d in specs])
        for bound, kept in ((1, [WIN]), (0, [WIN])):  # 0: never an endless eviction loop
            cache = RenderCache(store, 600, build_stored, max_entries=bound)
            assert cache.get(MINIMAL) is not None and cache.get(WIN) is not None
            assert list(cache.entries) == kept
    finally:
        store.close()


def _workers(api: ApiServer) -> set[int]:
    """The server's live granian workers. Matched on the spawn command line:
    a child caught between fork and exec still shows its parent's arguments,
    and the resource tracker is a child too."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "--ppid", str(api.proc.pid)],
                         capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines()
            if "multiprocessing.spawn" in line and not line.split()[1].startswith("Z")}


def _wait_for_workers(api: ApiServer, count: int, gone: int | None = None) -> set[int]:
    deadline = time.monotonic() + 30
    while True:
        now = _workers(api)
        if len(now) == count and gone not in now:
            return now
        assert time.monotonic() < deadline, f"workers {now}, server log:\n{api.log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_a_crashed_worker_is_replaced(env: tuple[Path, Path, Path]) -> None:
    tmp, data, secret = env
    with api_server(tmp, "--data-dir", str(data), "--secret-file", str(secret)) as api:
        before = _wait_for_workers(api, 2)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)  # one of this test's own server's workers
        _wait_for_workers(api, 2, gone=victim)
        for _ in range(10):
            status = get(api, "/latest/meta-data/hostname").status
            assert status == 200, f"{status}, server log:\n{api.log.read_text()[-3000:]}"


def test_local_ipv4_falls_back_to_the_asker_as_nova_does(api: ApiServer) -> None:
    """An instance without a fixed IPv4 (minimal: no NICs) gets the address its request came
    from, as Nova answers: the X-Forwarded-For entry the agent's haproxy appended."""
    forwarded = {"X-Forwarded-For": "10.9.9.9, 192.0.2.77"}  # a guest's own entry, then haproxy's
    assert get(api, "/latest/meta-data/local-ipv4", MINIMAL, "", **forwarded).body == b"192.0.2.77"
    assert b"local-ipv4" in get(api, "/latest/meta-data/", MINIMAL, "", **forwarded).body.split(b"\n")
    rich = get(api, "/latest/meta-data/local-ipv4", **forwarded).body  # a fixed IPv4 wins
    assert rich == b"192.0.2.10"
    mapped = {"X-Forwarded-For": "::ffff:192.0.2.78"}  # haproxy on a dual-stack bind
    assert get(api, "/latest/meta-data/local-ipv4", MINIMAL, "", **mapped).body == b"192.0.2.78"
