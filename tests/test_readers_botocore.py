"""botocore's IMDS fetcher (what every AWS SDK for Python uses on an instance)
against our API in direct mode with IMDSv2 required.

With `imds_v2 = "required"` an answer proves botocore's token dance worked:
PUT /latest/api/token, then the token on every GET. Tokens that are forged,
altered or missing are refused, and botocore's own retry logic reports no
metadata rather than reading an error page. Expectations come from the spec.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.conftest import SAMPLES
from tests.support.readers import direct_api, loopback_spec, probe


def test_botocore_reads_with_imds_v2_tokens(tmp_path: Path) -> None:
    """instance-id, local-hostname, public keys and user data of the rich sample; a
    forged, altered or missing token gets 401."""
    spec_path = loopback_spec(SAMPLES / "rich.yaml", tmp_path)
    spec = json.loads(spec_path.read_text())
    with direct_api(tmp_path, spec_path, env={"CONFIGDRIVE_API_IMDS_V2": "required"}) as api:
        got = probe("botocore", api.url)
    read = {path: (answer["status"], base64.b64decode(answer["body_b64"]).decode())
            for path, answer in got["read"].items()}
    key_path = "latest/meta-data/public-keys/0/openssh-key"  # a final newline is Nova's, and allowed
    read[key_path] = (read[key_path][0], read[key_path][1].removesuffix("\n"))
    hostname = f"{spec['hostname']}.{spec['dhcp_domain']}"
    assert got["token_received"]
    assert read == {
        "latest/meta-data/instance-id": (200, f"i-{spec['ec2_instance_id']:08x}"),
        "latest/meta-data/local-hostname": (200, hostname),
        "latest/meta-data/hostname": (200, hostname),
        "latest/meta-data/public-keys/": (200, "\n".join(f"{i}={k['name']}" for i, k in enumerate(spec["keys"]))),
        "latest/meta-data/public-keys/0/openssh-key": (200, spec["keys"][0]["data"]),
        "latest/user-data": (200, spec["user_data"]["text"]),
    }
    # botocore's region: the availability zone less its last letter (us-east-1a -> us-east-1)
    assert got["region"] == spec["availability_zone"][:-1]
    refused = {"status": 401, "outcome": "_RetriesExceededError"}
    assert got["forged"] == got["wrong"] == got["none"] == refused
