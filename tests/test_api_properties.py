"""Property tests against the running API (proxy mode): whatever the path,
method and identity headers, never a 500 and never another instance's data."""
from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api_support import RICH, RICH_PROJECT, WIN, WIN_PROJECT, prepare, signed
from tests.support.apiserver import ApiServer, api_server

WIN_MARKERS = (WIN.encode(), b"win-1", b"winrm-cert", b"ps1_sysnative", b"Administrator")
SEGMENTS = ["", ".", "..", "latest", "2009-04-04", "1.0", "2013-04-04", "openstack", "ec2", "meta-data",
            "user-data", "public-keys", "0", "1", "0=alice", "openssh-key", "_name", "hostname",
            "meta_data.json", "user_data", "password", "vendor_data2.json", "network_data.json",
            "content", "0000", "api", "token", "placement", "block-device-mapping", "%2e%2e", "%00", "?x=1"]

segment = st.one_of(st.sampled_from(SEGMENTS),
                    st.text(min_size=1, max_size=12).map(lambda s: urllib.parse.quote(s, safe="")))
paths = st.lists(segment, max_size=6).map(lambda parts: "/" + "/".join(parts))
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=80).map(str.strip)


@st.composite
def identities(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """(who the request may legitimately be answered as, headers)."""
    kind = draw(st.sampled_from(["rich", "win", "win-id-rich-sig", "random", "partial", "token"]))
    if kind == "rich":
        return "rich", signed(RICH, RICH_PROJECT)
    if kind == "win":
        return "win", signed(WIN, WIN_PROJECT)
    if kind == "win-id-rich-sig":
        return "none", {**signed(RICH, RICH_PROJECT), "X-Instance-ID": WIN}
    if kind == "token":
        return "rich", signed(RICH, RICH_PROJECT, **{"X-aws-ec2-metadata-token": draw(header_text) or "x"})
    headers = {name: draw(header_text) for name in
               draw(st.sets(st.sampled_from(["X-Instance-ID", "X-Instance-ID-Signature", "X-Tenant-ID",
                                             "X-Forwarded-For", "X-aws-ec2-metadata-token-ttl-seconds"])))}
    if kind == "partial":  # all of RICH's signed headers drawn is a valid request as RICH
        full = signed(RICH, RICH_PROJECT)
        chosen = {k: v for k, v in full.items() if draw(st.booleans())}
        headers.update(chosen)
        return ("rich" if len(chosen) == len(full) else "none"), headers
    return "none", headers


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    tmp: Path = tmp_path_factory.mktemp("api-props")
    data, secret = prepare(tmp, "rich", "windows")
    with api_server(tmp, "--data-dir", str(data), "--secret-file", str(secret), "--access-log", "off") as server:
        yield server


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, method=st.sampled_from(["GET", "GET", "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]),
       who=identities())
def test_never_500_never_other_instance(api: ApiServer, path: str, method: str,
                                       who: tuple[str, dict[str, str]]) -> None:
    owner, headers = who
    resp = api.request(method, path, headers)
    assert resp.status in (200, 400, 401, 403, 404, 405), (resp.status, resp.body)
    if owner != "win":
        for marker in WIN_MARKERS:
            assert marker not in resp.body, (path, headers)
    if owner == "none" and resp.status == 200 and method != "HEAD":
        # only what is answered before identification (the EC2 version list)
        assert resp.body.endswith(b"\nlatest") and b"{" not in resp.body, (path, resp.body)
