"""vendor_data.json from a static file and vendor_data2.json from dynamic REST
targets, configured through the TOML file and environment overrides."""
from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metadata_content.spec import load_instance
from tests.support.api_support import RICH, RICH_PROJECT, SAMPLES, WEB, WEB_PROJECT, prepare, signed
from tests.support.apiserver import api_server, free_port

STATIC = {"site": "lab", "cloud-init": "#cloud-config\n{}\n"}


@contextlib.contextmanager
def target_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A dynamic vendor-data target on 127.0.0.1 that records what it is sent."""
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"body": body, "content_type": self.headers["Content-Type"]})
            out = json.dumps({"answered_for": body["instance-id"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/vendordata", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path, str, list[dict[str, Any]]]]:
    tmp = tmp_path_factory.mktemp("api-vendordata")
    data, secret = prepare(tmp, "rich", "webserver")
    static = tmp / "vendor.json"
    static.write_text(json.dumps(STATIC))
    with target_server() as (url, seen):
        config = tmp / "configdrive.toml"
        config.write_text(f"""
[store]
data_dir = "{data}"

[api]
mode = "proxy"
cache_ttl = 600

[vendordata]
file = "{static}"
dynamic_targets = ["good@{url}", "broken@http://127.0.0.1:{free_port()}/nothing", "good@http://ignored"]
dynamic_timeout = 2
""")
        yield tmp, config, secret, url, seen


def test_static_and_dynamic_vendor_data(setup: tuple[Path, Path, Path, str, list[dict[str, Any]]]) -> None:
    tmp, config, secret, _url, seen = setup
    with api_server(tmp, "--config", str(config), env={"CONFIGDRIVE_API_SECRET_FILE": str(secret)},
                    workers=1) as api:
        web = signed(WEB, WEB_PROJECT)
        assert json.loads(api.request("GET", "/openstack/latest/vendor_data.json", web).body) == STATIC
        # a spec's own vendor data wins over the file
        rich = api.request("GET", "/openstack/latest/vendor_data.json", signed(RICH, RICH_PROJECT)).body
        assert json.loads(rich) == load_instance(SAMPLES / "rich.yaml").vendor_data
        assert seen == []  # targets are asked only for vendor_data2.json
        doc = json.loads(api.request("GET", "/openstack/latest/vendor_data2.json", web).body)
        assert doc == {"static": STATIC, "good": {"answered_for": WEB}, "broken": {}}
        assert len(seen) == 1 and seen[0]["content_type"] == "application/json"
        body = seen[0]["body"]
        assert list(body) == ["project-id", "instance-id", "image-id", "user-data", "hostname", "metadata",
                              "boot-roles"]
        assert body["project-id"] == WEB_PROJECT and body["hostname"] == "web-1"
        api.request("GET", "/openstack/2016-10-06/vendor_data2.json", web)
        assert len(seen) == 1  # cached with the instance


def test_fatal_target_failure_is_500(setup: tuple[Path, Path, Path, str, list[dict[str, Any]]]) -> None:
    tmp, config, secret, _url, _seen = setup
    env = {"CONFIGDRIVE_API_SECRET_FILE": str(secret), "CONFIGDRIVE_VENDORDATA_DYNAMIC_FAILURE_FATAL": "true"}
    with api_server(tmp, "--config", str(config), env=env, workers=1) as api:
        web = signed(WEB, WEB_PROJECT)
        assert api.request("GET", "/openstack/latest/vendor_data2.json", web).status == 500
        assert api.request("GET", "/openstack/latest/meta_data.json", web).status == 200
