"""The API on a shared PostgreSQL store: two API processes (as on two hosts),
one database. Cache invalidation rides on LISTEN/NOTIFY; the password's
set-once rule holds across processes."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api_support import SAMPLES, SECRET, WEB, WEB_PROJECT, WIN, WIN_PROJECT, signed
from tests.support.apiserver import ApiServer, api_server, cli
from tests.support.pgcluster import postgres_cluster


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Path]]:
    tmp = tmp_path_factory.mktemp("api-pg")
    secret = tmp / "secret"
    secret.write_bytes(SECRET)
    with postgres_cluster() as url:
        cli("instances", "--store-url", url, "add", str(SAMPLES / "webserver.yaml"), str(SAMPLES / "windows.yaml"))
        yield tmp, url, secret


@pytest.fixture(scope="module")
def apis(setup: tuple[Path, str, Path]) -> Iterator[tuple[ApiServer, ApiServer]]:
    tmp, url, secret = setup
    args = ("--store-url", url, "--secret-file", str(secret), "--cache-ttl", "600")
    with api_server(tmp, *args) as one, api_server(tmp, *args, workers=1) as two:
        yield one, two


def test_update_seen_by_every_process(setup: tuple[Path, str, Path], apis: tuple[ApiServer, ApiServer]) -> None:
    tmp, url, _secret = setup
    path = "/openstack/latest/meta_data.json"
    for api in apis * 5:
        assert json.loads(api.request("GET", path, signed(WEB, WEB_PROJECT)).body)["hostname"] == "web-1.novalocal"
    spec = json.loads(cli("instances", "--store-url", url, "show", WEB).stdout)
    spec["meta"] = {"changed": "yes"}
    (tmp / "changed.json").write_text(json.dumps(spec))
    cli("instances", "--store-url", url, "update", str(tmp / "changed.json"))
    for api in apis * 5:
        assert json.loads(api.request("GET", path, signed(WEB, WEB_PROJECT)).body)["meta"] == {"changed": "yes"}
    cli("instances", "--store-url", url, "remove", WEB)
    for api in apis:
        assert api.request("GET", path, signed(WEB, WEB_PROJECT)).status == 404


def test_password_once_across_processes(apis: tuple[ApiServer, ApiServer]) -> None:
    path = "/openstack/latest/password"
    statuses: list[int] = []
    barrier = threading.Barrier(50)

    def post(i: int) -> None:
        barrier.wait(timeout=30)
        api = apis[i % 2]
        statuses.append(api.request("POST", path, signed(WIN, WIN_PROJECT), body=f"pw-{i}".encode()).status)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * 49
    bodies = {api.request("GET", path, signed(WIN, WIN_PROJECT)).body for api in apis}
    assert len(bodies) == 1 and bodies.pop().startswith(b"pw-")
