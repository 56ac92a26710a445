"""The instance store on SQLite (WAL file) and on a real PostgreSQL server."""
from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metadata_content.spec import instance_from_data, read_spec
from metadata_content.store import ChangeWatcher, Store, StoreError
from tests.support.api_support import RICH, SAMPLES
from tests.support.pgcluster import postgres_cluster

_names = itertools.count()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    import psycopg

    base = request.getfixturevalue("pg_server")
    name = f"t{next(_names)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def spec(name: str, **changes: Any) -> tuple[dict[str, Any], Any]:
    data = read_spec(SAMPLES / f"{name}.yaml")
    data.update(changes)
    return data, instance_from_data(copy.deepcopy(data), name)


def test_add_get_list_remove(store: Store) -> None:
    rich, web = spec("rich"), spec("webserver")
    store.add([rich, web])
    rec = store.get(RICH)
    assert rec is not None and rec.spec == rich[0] and rec.version == 1
    assert rec.project_id == "2a1f6a4e1c7b4a2f9a3d5e6f70819203"
    # the stored spec is self-contained: it rebuilds the same instance
    assert instance_from_data(rec.spec, "store") == rich[1]
    assert {r.uuid for r in store.list()} == {RICH, web[1].uuid}
    store.remove(RICH)
    assert store.get(RICH) is None and store.find_by_address("192.0.2.10") == []
    with pytest.raises(StoreError, match="not registered"):
        store.remove(RICH)


def test_remove_is_all_or_none(store: Store) -> None:
    web = spec("webserver")
    store.add([spec("rich"), web])
    seq = store.last_change()
    with pytest.raises(StoreError, match="instance nope is not registered"):
        store.remove(RICH, "nope")
    assert store.get(RICH) is not None and store.last_change() == seq  # nothing removed, nothing logged
    store.remove(RICH, web[1].uuid, RICH)
    assert store.list() == [] and store.find_by_address("192.0.2.10") == []
    assert sorted(store.changes_since(seq)[1] or []) == sorted([RICH, web[1].uuid])


def test_duplicate_uuid_changes_nothing(store: Store) -> None:
    store.add([spec("rich")])
    web = spec("webserver")
    with pytest.raises(StoreError, match=f"{RICH} is already registered"):
        store.add([web, spec("rich")])
    assert [r.uuid for r in store.list()] == [RICH]  # the batch is all or nothing


def test_fixed_ip_conflict_on_same_network_only(store: Store) -> None:
    store.add([spec("webserver")])  # 10.0.0.11 on b1a76d32-...
    clash = spec("minimal", nics=[{"mac": "fa:16:3e:00:00:99", "network_id": "b1a76d32-32c2-42c2-9aee-e226ccf7eec3",
                                   "subnets": [{"cidr": "10.0.0.0/24", "ip": "10.0.0.11"}]}])
    with pytest.raises(StoreError, match=r"fixed IP 10\.0\.0\.11 on network b1a76d32.* used by instance 1281168b"):
        store.add([clash])
    assert store.get(clash[1].uuid) is None
    other_net = spec("minimal", nics=[{"mac": "fa:16:3e:00:00:99", "network_id": "0f0f0f0f-0000-4000-8000-000000000001",
                                       "subnets": [{"cidr": "10.0.0.0/24", "ip": "10.0.0.11"}]}])
    store.add([other_net])
    assert sorted(u for u, _ in store.find_by_address("10.0.0.11")) == sorted([other_net[1].uuid,
                                                                              "1281168b-3d3b-4ab0-b2db-115fb02e8d1f"])
    assert [u for u, _ in store.find_by_address("10.0.0.11", ["0f0f0f0f-0000-4000-8000-000000000001"])] == \
        [other_net[1].uuid]


def test_update_reindexes_and_keeps_password(store: Store) -> None:
    store.add([spec("webserver")])
    uuid = "1281168b-3d3b-4ab0-b2db-115fb02e8d1f"
    assert store.set_password_once(uuid, "pw")
    data, inst = spec("webserver", hostname="web-2", nics=[{
        "mac": "fa:16:3e:11:22:33", "network_id": "b1a76d32-32c2-42c2-9aee-e226ccf7eec3",
        "subnets": [{"cidr": "10.0.0.0/24", "ip": "10.0.0.12"}]}])
    assert store.update(data, inst) == 2
    assert store.find_by_address("10.0.0.11") == [] and [u for u, _ in store.find_by_address("10.0.0.12")] == [uuid]
    assert store.get_password(uuid) == "pw"
    with pytest.raises(StoreError, match="not registered"):
        store.update(*spec("minimal"))


def test_lookups_by_address_mac_and_router(store: Store) -> None:
    store.add([spec("rich")])
    project = "2a1f6a4e1c7b4a2f9a3d5e6f70819203"
    assert store.find_by_address("::ffff:192.0.2.10") == [(RICH, project)]  # IPv4-mapped
    assert store.find_by_address("2001:db8:1:0::10") == [(RICH, project)]  # any IPv6 spelling
    assert store.find_by_mac("FA:16:3E:AA:00:02") == [(RICH, project)]
    assert store.find_by_address("192.0.2.11") == []
    store.set_router_networks("r1", ["n2", "n1", "n2"])
    assert store.router_networks("r1") == ["n1", "n2"]
    store.set_router_networks("r1", [])
    assert store.router_networks("r1") == []


def test_password_set_exactly_once_under_concurrency(store: Store) -> None:
    store.add([spec("windows")])
    uuid = "ac681a8a-c9bc-4544-a257-0301b95fce3c"
    results: dict[int, bool] = {}
    barrier = threading.Barrier(50)

    def post(i: int) -> None:
        barrier.wait(timeout=30)
        results[i] = store.set_password_once(uuid, f"pw-{i}")

    threads = [threading.Thread(target=post, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [i for i, ok in results.items() if ok]
    assert len(results) == 50 and len(winners) == 1
    assert store.get_password(uuid) == f"pw-{winners[0]}"
    store.clear_password(uuid)
    assert store.get_password(uuid) is None and store.set_password_once(uuid, "again")


def test_empty_password_does_not_count_as_set(store: Store) -> None:
    """Nova treats an empty password as none: a later POST may still set it."""
    store.add([spec("windows")])
    uuid = "ac681a8a-c9bc-4544-a257-0301b95fce3c"
    assert store.set_password_once(uuid, "")
    assert store.get_password(uuid) is None
    assert store.set_password_once(uuid, "real") and not store.set_password_once(uuid, "late")


def test_every_logged_write_takes_the_change_log_lock(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change-log row written outside the lock could commit out of sequence order."""
    locked: list[Any] = []
    lock, log_change = Store._lock_changes, Store._log_change

    def lock_changes(self: Store, conn: Any) -> None:
        lock(self, conn)
        locked.append(conn)

    def checked_log_change(self: Store, conn: Any, uuid: str) -> None:
        assert any(conn is c for c in locked), f"{uuid} logged without the change-log lock"
        log_change(self, conn, uuid)

    monkeypatch.setattr(Store, "_lock_changes", lock_changes)
    monkeypatch.setattr(Store, "_log_change", checked_log_change)
    store.add([spec("rich")])
    store.update(*spec("rich"))
    store.set_router_networks("r", ["n"])
    store.remove(RICH)
    assert len(locked) == 4


def poll_soon(watcher: ChangeWatcher) -> list[str] | None:
    """The first non-empty poll within 2 s: PostgreSQL delivers NOTIFY a moment
    after the writer's commit returns (SQLite's data_version moves at once)."""
    deadline = time.monotonic() + 2
    while True:
        changed = watcher.poll()
        if changed or time.monotonic() > deadline:
            return changed
        time.sleep(0.005)


def test_change_watcher_sees_other_connections(store_url: str) -> None:
    writer, reader = Store(store_url), Store(store_url)
    try:
        watcher = ChangeWatcher(reader)
        assert watcher.poll() == []
        writer.add([spec("rich")])
        writer.update(*spec("rich"))
        writer.add([spec("minimal")])
        seen = poll_soon(watcher) or []
        while len(seen) < 2:  # the three commits may arrive as separate notifications
            more = poll_soon(watcher)
            assert more, seen
            seen += [u for u in more if u not in seen]
        assert seen == [RICH, "dc7c8e7d-a420-45fd-bc9f-ae0a16177f73"]
        assert watcher.poll() == []
        writer.remove(RICH)
        assert poll_soon(watcher) == [RICH]
        writer.set_router_networks("r", ["n"])  # logged too: agents cache router -> networks
        assert poll_soon(watcher) == ["router:r"]
    finally:
        writer.close()
        reader.close()


def test_change_watcher_forgets_everything_past_the_log(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import metadata_content.store as store_module

    monkeypatch.setattr(store_module, "KEEP_CHANGES", 2)
    writer, reader = Store(store_url), Store(store_url)
    try:
        watcher = ChangeWatcher(reader)
        for _ in range(4):
            writer.add([spec("minimal")])
            writer.remove("dc7c8e7d-a420-45fd-bc9f-ae0a16177f73")
        assert watcher.poll() is None
        assert watcher.poll() == []
    finally:
        writer.close()
        reader.close()


def test_settings_are_shared_and_created_once(store_url: str) -> None:
    a, b = Store(store_url), Store(store_url)
    try:
        assert a.setting("imds_token_key") == b.setting("imds_token_key")
        assert len(a.setting("imds_token_key")) == 64
    finally:
        a.close()
        b.close()


def test_default_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIGDRIVE_DATA", str(tmp_path / "d"))
    s = Store()
    try:
        assert s.url == f"sqlite:///{tmp_path / 'd' / 'store.db'}"
        s.add([spec("minimal")])
        mode = s.engine.connect().exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"
    finally:
        s.close()


def test_instances_cli(tmp_path: Path) -> None:
    from tests.support.apiserver import cli

    data = str(tmp_path / "data")
    rich, web = str(SAMPLES / "rich.yaml"), str(SAMPLES / "webserver.yaml")
    assert cli("instances", "--data-dir", data, "add", rich).returncode == 0
    dup = cli("instances", "--data-dir", data, "add", web, rich, check=False)
    assert dup.returncode == 1 and f"{RICH} is already registered" in dup.stderr and "nothing was changed" in dup.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"uuid": "not-a-uuid", "hostname": "x"}))
    invalid = cli("instances", "--data-dir", data, "add", web, str(bad), check=False)
    assert invalid.returncode == 2 and "uuid" in invalid.stderr
    listed = cli("instances", "--data-dir", data, "list", "--json").stdout.splitlines()
    assert [json.loads(line)["uuid"] for line in listed] == [RICH]  # neither batch changed anything
    shown = json.loads(cli("instances", "--data-dir", data, "show", RICH).stdout)
    assert shown == read_spec(SAMPLES / "rich.yaml")
    assert cli("instances", "--data-dir", data, "update", rich).stdout.strip() == f"updated {RICH} (version 2)"
    failed = cli("instances", "--data-dir", data, "remove", RICH, "nope", check=False)
    assert failed.returncode == 1 and failed.stdout == "" and "instance nope is not registered" in failed.stderr
    assert cli("instances", "--data-dir", data, "show", RICH).returncode == 0  # all or none
    assert cli("instances", "--data-dir", data, "remove", RICH).returncode == 0
    assert cli("instances", "--data-dir", data, "show", RICH, check=False).returncode == 1
    env_dir = cli("instances", "list", env={"CONFIGDRIVE_DATA": data})
    assert env_dir.returncode == 0 and env_dir.stdout == ""


def test_store_errors_never_show_the_database_password() -> None:
    from tests.conftest import run_cli

    proc = run_cli("instances", "--store-url", "postgresql://bob:hunter2@127.0.0.1:1/db", "list")
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "cannot open the store postgresql://bob:***@127.0.0.1:1/db" in err
    assert "hunter2" not in err and "Traceback" not in err
