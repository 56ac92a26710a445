"""Run third-party metadata readers (glean, cloudbase-init, botocore) on our
drives and API and print what they read, or would write, as JSON.

Runs under the readers' own venv (tests/support/readers.py builds it from
tests/readers.txt), never under the project venv. Only the readers' own code
reads and parses; this script lays out their inputs and reports.

    readers_probe.py glean DRIVE_DIR ROOT --parent-ns NS --nic NAME=MAC ... [--distro D ...]
        glean's CLI (`--noop --ssh --root ROOT`) once per distro flavour on a
        scratch root whose mnt/config is DRIVE_DIR and whose sys/class/net
        holds the NICs; {"files": {distro: {path: text}}}. Must run in a
        private mount namespace (not NS): it hides the host's own
        /etc/network, /etc/systemd/network and /root/.ssh, which glean
        reads whatever its --root.
    readers_probe.py cloudbase-drive DRIVE_DIR
        cloudbase-init's ConfigDriveService reading an extracted drive.
    readers_probe.py cloudbase-http URL
        cloudbase-init's HttpService (OpenStack metadata over HTTP).
    readers_probe.py cloudbase-password URL PASSWORD PRIVATE_KEY
        cloudbase-init's password flow: SetUserPasswordPlugin encrypts with
        the instance's SSH key and POSTs, then a second POST.
    readers_probe.py botocore URL
        botocore's IMDS fetchers with IMDSv2 tokens.

stdout is one JSON object: {"ok": true, "result": {...}} or {"ok": false,
"error": ..., "traceback": ...}. Bytes are sent as base64 under keys ending
in "_b64".
"""
from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import traceback
from typing import Any

HIDDEN_HOST_DIRS = ("/etc/network", "/etc/systemd/network", "/root/.ssh")


def _jsonable(value: Any) -> Any:
    """namedtuples (cloudbase-init's network model) become dicts."""
    if hasattr(value, "_asdict"):
        return {k: _jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


# --- glean -----------------------------------------------------------------

def _hide_host_dirs(parent_ns: str) -> None:
    if os.readlink("/proc/self/ns/mnt") == parent_ns:
        raise RuntimeError("not in a private mount namespace: refusing to mount over the host's directories")
    for path in HIDDEN_HOST_DIRS:
        if os.path.isdir(path):
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "readers-probe", path], check=True, timeout=30)


def glean(drive: str, root: str, parent_ns: str, nics: list[str], distros: list[str]) -> dict[str, Any]:
    _hide_host_dirs(parent_ns)
    os.makedirs(os.path.join(root, "mnt"), exist_ok=True)
    os.makedirs(os.path.join(root, "root"), exist_ok=True)  # root's home: glean makes .ssh in it
    os.makedirs(os.path.join(root, "sys", "class", "net", "lo"))  # every guest has one; glean skips it
    os.symlink(os.path.abspath(drive), os.path.join(root, "mnt", "config"))
    for nic in nics:
        name, mac = nic.split("=", 1)
        sysfs = os.path.join(root, "sys", "class", "net", name)
        os.makedirs(sysfs)
        # What the kernel shows for a NIC with a permanent MAC and a carrier.
        for attr, value in (("address", mac.lower()), ("addr_assign_type", "0"), ("carrier", "1")):
            with open(os.path.join(sysfs, attr), "w") as fh:
                fh.write(value + "\n")
    files: dict[str, dict[str, str]] = {}
    for distro in distros:
        proc = subprocess.run([sys.executable, "-m", "glean.cmd", "--noop", "--ssh", "--root", root,
                               "--distro", distro], capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"glean --distro {distro} exited {proc.returncode}:\n{proc.stderr}")
        # --noop prints "### Write PATH\n" then the content; anything before the first
        # header (systemctl's answer when glean asks about resolved) is not a file.
        parts = re.split(r"^### Write (\S+)\n", proc.stdout, flags=re.MULTILINE)
        files[distro] = dict(zip(parts[1::2], parts[2::2], strict=True))
    return {"files": files, "version": importlib.metadata.version("glean")}


# --- cloudbase-init --------------------------------------------------------

def _cloudbase_conf(url: str | None = None) -> None:
    """The few options a Linux host needs; everything else keeps cloudbase-init's defaults."""
    from cloudbaseinit import conf

    conf.CONF([], project="cloudbase-init", default_config_files=[])
    conf.CONF.set_override("retry_count", 0)  # a failure fails at once, not after 5 x 4 s
    if url is not None:
        conf.CONF.set_override("metadata_base_url", url.rstrip("/") + "/", group="openstack")
        # The route to 169.254.169.254 is set through Windows' osutils.
        conf.CONF.set_override("add_metadata_private_ip_route", False, group="openstack")


def _openstack_view(service: Any) -> dict[str, Any]:
    """What a BaseOpenStackService hands to cloudbase-init's plugins."""
    from cloudbaseinit.metadata.services import base

    try:
        user_data = service.get_decoded_user_data()
    except base.NotExistingMetadataException:
        user_data = None
    return {
        "instance_id": service.get_instance_id(),
        "host_name": service.get_host_name(),
        "public_keys": sorted(service.get_public_keys()),
        # The meta_data.json values as parsed by the service, before get_public_keys strips them.
        "raw_public_keys": service._get_meta_data().get("public_keys", {}),
        "user_data_b64": None if user_data is None else base64.b64encode(user_data).decode(),
        "admin_username": service.get_admin_username(),
        "admin_password": service.get_admin_password(),
        "client_auth_certs": sorted(service.get_client_auth_certs()),
        "network": _jsonable(service.get_network_details_v2()),
        "version": importlib.metadata.version("cloudbase-init"),
    }


def cloudbase_drive(drive: str) -> dict[str, Any]:
    _cloudbase_conf()
    from cloudbaseinit.metadata.services import configdrive

    service = configdrive.ConfigDriveService()
    # load() finds and copies the drive through Windows' disk APIs
    # (osconfigdrive.windows); the folder it copies to is this one.
    service._metadata_path = drive
    return _openstack_view(service)


def cloudbase_http(url: str) -> dict[str, Any]:
    _cloudbase_conf(url)
    from cloudbaseinit.metadata.services import httpservice

    service = httpservice.HttpService()
    loaded = service.load()
    return {"loaded": loaded, "can_post_password": service.can_post_password, **_openstack_view(service)}


def cloudbase_password(url: str, password: str, private_key: str) -> dict[str, Any]:
    import requests
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    _cloudbase_conf(url)
    from cloudbaseinit.metadata.services import httpservice
    from cloudbaseinit.plugins.common import setuserpassword

    service = httpservice.HttpService()
    if not service.load():
        raise RuntimeError(f"HttpService found no metadata at {url}")
    plugin = setuserpassword.SetUserPasswordPlugin()
    result: dict[str, Any] = {"can_post_password": service.can_post_password,
                              "set_before": service.is_password_set,
                              "encryption_key": service.get_user_pwd_encryption_key()}
    # The plugin's metadata step, as execute() runs it after setting the Windows password.
    result["first"] = plugin._set_metadata_password(password, service)
    result["set_after"] = service.is_password_set
    stored = service._get_data(service._get_password_path())
    with open(private_key, "rb") as fh:
        key = serialization.load_ssh_private_key(fh.read(), password=None)
    result["decrypted"] = key.decrypt(base64.b64decode(stored), padding.PKCS1v15()).decode()  # type: ignore[union-attr]
    # The plugin again (next boot): it sees the password set and posts nothing.
    result["again"] = plugin._set_metadata_password(password + "-again", service)
    # A second POST straight through the service.
    second = plugin._encrypt_password(result["encryption_key"], password + "-second")
    try:
        result["second_post"] = {"returned": service.post_password(second)}
    except requests.HTTPError as e:  # 1.1.9 expects urllib's HTTPError here; requests raises its own
        result["second_post"] = {"raised": type(e).__name__, "status": e.response.status_code}
    result["stored_after_second"] = service._get_data(service._get_password_path()).decode() == stored.decode()
    return result


# --- botocore ----------------------------------------------------------------

def botocore_imds(url: str) -> dict[str, Any]:
    from botocore.utils import IMDSFetcher, InstanceMetadataRegionFetcher

    def answer(response: Any) -> dict[str, Any]:
        return {"status": response.status_code, "body_b64": base64.b64encode(response.content).decode()}

    # IMDSv1 off: every GET below must carry the token the fetcher got from PUT /latest/api/token.
    fetcher = IMDSFetcher(base_url=url, timeout=5, num_attempts=1, env={},
                          config={"ec2_metadata_v1_disabled": True})
    token = fetcher._fetch_metadata_token()
    paths = ["latest/meta-data/instance-id", "latest/meta-data/local-hostname", "latest/meta-data/hostname",
             "latest/meta-data/public-keys/", "latest/meta-data/public-keys/0/openssh-key", "latest/user-data"]
    read = {path: answer(fetcher._get_request(path, lambda r: False, token)) for path in paths}
    # The public entry point: botocore's region from the availability zone, IMDSv2 inside.
    region = InstanceMetadataRegionFetcher(base_url=url, timeout=5, num_attempts=1, env={}).retrieve_region()

    def refused(bad_token: str | None) -> dict[str, Any]:
        """Status of a GET with *bad_token*, and what the fetcher's own retry logic makes of it."""
        v1 = IMDSFetcher(base_url=url, timeout=5, num_attempts=1, env={})
        status = v1._get_request(paths[0], lambda r: False, bad_token).status_code
        try:
            v1._get_request(paths[0], None, bad_token)
            outcome = "read"
        except Exception as e:
            outcome = type(e).__name__
        return {"status": status, "outcome": outcome}

    wrong = token[:-1] + ("A" if token[-1] != "A" else "B") if token else None
    return {"token_received": bool(token), "read": read, "region": region,
            "forged": refused("forged-token"), "wrong": refused(wrong), "none": refused(None),
            "version": importlib.metadata.version("botocore")}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("glean")
    p.add_argument("drive")
    p.add_argument("root")
    p.add_argument("--parent-ns", required=True)
    p.add_argument("--nic", action="append", default=[], metavar="NAME=MAC")
    p.add_argument("--distro", action="append", default=[])
    sub.add_parser("cloudbase-drive").add_argument("drive")
    sub.add_parser("cloudbase-http").add_argument("url")
    p = sub.add_parser("cloudbase-password")
    p.add_argument("url")
    p.add_argument("password")
    p.add_argument("private_key")
    sub.add_parser("botocore").add_argument("url")
    args = parser.parse_args(argv)

    out, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the JSON answer
    try:
        if args.command == "glean":
            result = glean(args.drive, args.root, args.parent_ns, args.nic, args.distro or ["debian", "networkd"])
        elif args.command == "cloudbase-drive":
            result = cloudbase_drive(args.drive)
        elif args.command == "cloudbase-http":
            result = cloudbase_http(args.url)
        elif args.command == "cloudbase-password":
            result = cloudbase_password(args.url, args.password, args.private_key)
        else:
            result = botocore_imds(args.url)
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}),
              file=out)
        return 1
    print(json.dumps({"ok": True, "result": result}), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
