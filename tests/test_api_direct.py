"""The metadata API in direct mode (no agent): guests found by address, read
by Debian's real cloud-init (22.4.2, under /usr/bin/python3)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata_content.spec import read_spec
from tests.support.api_support import SAMPLES, WEB, prepare
from tests.support.apiserver import ApiServer, api_server, cli
from tests.support.cloudinit_consumer import b64decode_field, crawl_ec2, read_http_openstack

LOCAL = "5e1f0c1a-7a53-4b8e-9b2c-0d1e2f3a4b5c"  # owns 127.0.0.1, where the tests connect from
TWIN_A = "5e1f0c1a-7a53-4b8e-9b2c-0d1e2f3a4b01"
TWIN_B = "5e1f0c1a-7a53-4b8e-9b2c-0d1e2f3a4b02"
TRUSTED = "127.0.0.2"  # the trusted proxy; 127.0.0.1 is an ordinary client


def _spec(tmp: Path, uuid: str, hostname: str, ip: str, cidr: str, network: str) -> Path:
    data = read_spec(SAMPLES / "webserver.yaml")
    data.update(uuid=uuid, hostname=hostname, name=hostname, nics=[{
        "name": "eth0", "mac": "fa:16:3e:00:00:" + uuid[-2:], "network_id": network,
        "subnets": [{"cidr": cidr, "ip": ip, "gateway": cidr.split("/")[0][:-1] + "254"}]}])
    path = tmp / f"{hostname}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("api-direct")
    data, _secret = prepare(tmp, "webserver", "rich")
    specs = [_spec(tmp, LOCAL, "local-1", "127.0.0.1", "127.0.0.0/8", "7e000000-0000-4000-8000-000000000001"),
             # the same fixed IP on two networks: direct mode cannot tell them apart
             _spec(tmp, TWIN_A, "twin-a", "172.31.0.5", "172.31.0.0/24", "7e000000-0000-4000-8000-00000000000a"),
             _spec(tmp, TWIN_B, "twin-b", "172.31.0.5", "172.31.0.0/24", "7e000000-0000-4000-8000-00000000000b")]
    cli("instances", "--data-dir", str(data), "add", *map(str, specs))
    with api_server(tmp, "--data-dir", str(data), "--mode", "direct", "--trusted-proxy", TRUSTED) as server:
        yield server


def test_found_by_client_address(api: ApiServer) -> None:
    assert api.request("GET", "/latest/meta-data/hostname").body == b"local-1.novalocal"
    via_proxy = api.request("GET", "/latest/meta-data/hostname", {"X-Forwarded-For": "10.0.0.11"}, source=TRUSTED)
    assert via_proxy.body == b"web-1.novalocal"
    # several proxies: the rightmost address that is not a trusted proxy is the guest
    chain = api.request("GET", "/openstack/latest/meta_data.json",
                        {"X-Forwarded-For": f"10.0.0.11, {TRUSTED}"}, source=TRUSTED)
    assert json.loads(chain.body)["uuid"] == WEB


def test_forwarded_for_is_ignored_from_untrusted_peers(api: ApiServer) -> None:
    """OSSN-0074: a guest cannot claim another guest's address."""
    resp = api.request("GET", "/latest/meta-data/hostname", {"X-Forwarded-For": "10.0.0.11"})
    assert resp.body == b"local-1.novalocal"


def test_zero_or_several_matches(api: ApiServer) -> None:
    assert api.request("GET", "/latest/meta-data/", {"X-Forwarded-For": "10.1.2.3"}, source=TRUSTED).status == 404
    assert api.request("GET", "/latest/meta-data/", {"X-Forwarded-For": "172.31.0.5"}, source=TRUSTED).status == 500
    assert api.request("GET", "/", {"X-Forwarded-For": "10.1.2.3"}, source=TRUSTED).status == 200


def test_token_put_relayed_by_the_guest_is_refused(api: ApiServer) -> None:
    ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    assert api.request("PUT", "/latest/api/token", ttl).status == 200
    assert api.request("PUT", "/latest/api/token", {**ttl, "X-Forwarded-For": "10.0.0.11"}).status == 403
    assert api.request("PUT", "/latest/api/token", {**ttl, "X-Forwarded-For": "10.0.0.11"},
                       source=TRUSTED).status == 200
    assert api.request("PUT", "/latest/api/token", {**ttl, "X-Forwarded-For": "1.2.3.4, 10.0.0.11"},
                       source=TRUSTED).status == 403


def test_cloud_init_reads_openstack_over_http(api: ApiServer) -> None:
    result = read_http_openstack(api.url)
    assert result["metadata"]["instance-id"] == LOCAL
    assert result["metadata"]["local-hostname"] == "local-1.novalocal"
    key = read_spec(SAMPLES / "webserver.yaml")["keys"][0]["data"] + "\n"  # one .pub line
    assert result["metadata"]["public_keys"] == {"alice": key}
    assert b64decode_field(result, "userdata") == (SAMPLES / "files" / "webserver-cloud-config.yaml").read_bytes()
    links = result["networkdata"]["links"]
    assert [link["ethernet_mac_address"] for link in links] == ["fa:16:3e:00:00:5c"]
    assert result["ec2-metadata"]["instance-id"].startswith("i-")
    assert all(r.startswith(api.url) for r in result["requests"])
    assert result["log"] == []


def test_cloud_init_crawls_ec2(api: ApiServer) -> None:
    result = crawl_ec2(api.url)
    md = result["meta-data"]
    assert md["hostname"] == "local-1.novalocal" and md["local-ipv4"] == "127.0.0.1"
    # a key value ending with a newline is read as a list of lines, as for Nova's imported keys
    assert md["public-keys"]["alice"] == [read_spec(SAMPLES / "webserver.yaml")["keys"][0]["data"]]
    assert md["security-groups"] == ["default", "web"]
    assert b64decode_field(result, "user-data") == (SAMPLES / "files" / "webserver-cloud-config.yaml").read_bytes()
    assert result["log"] == []
