"""Run Debian's real cloud-init readers and print what they saw as JSON.

Runs under Debian's /usr/bin/python3 (where the `cloud-init` package puts the
`cloudinit` modules), never under the project venv; tests reach it through
tests/support/cloudinit_consumer.py. Only cloud-init's public reader entry points are
called, so a result is what a guest running cloud-init 22.4.2 would get.

    cloudinit_probe.py drive DIR [--mac NAME=MAC ...]
    cloudinit_probe.py http-openstack URL [--timeout S] [--retries N]
    cloudinit_probe.py ec2 URL [--timeout S] [--retries N]

stdout is one JSON object: {"ok": true, "result": {...}} or {"ok": false,
"error": ..., "traceback": ...}; "unavailable": true when cloudinit cannot be
imported. Bytes are sent as base64 (JSON cannot carry them) and every key path
that held bytes is listed in result["base64_fields"]. cloud-init's warnings
go into result["log"] because its EC2 crawler swallows errors and returns {}.
"""
from __future__ import annotations

import argparse
import base64
import copy
import json
import logging
import sys
import traceback
from typing import Any


class _Capture(logging.Handler):
    """Keeps warnings, and debug records carrying a traceback (util.logexc logs those)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or record.exc_info:
            text = f"{record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[0] is not None:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            self.records.append(text)


def _jsonable(value: Any, path: list[str], b64: list[list[str]]) -> Any:
    if isinstance(value, (bytes, bytearray)):
        b64.append(path)
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _jsonable(v, [*path, str(k)], b64) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, [*path, str(i)], b64) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _record_requests() -> list[str]:
    """Every URL cloud-init fetches (ec2 and openstack helpers both end in url_helper.readurl)."""
    from cloudinit import url_helper

    seen: list[str] = []
    original = url_helper.readurl

    def readurl(url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(url)
        return original(url, *args, **kwargs)

    url_helper.readurl = readurl
    return seen


def drive(path: str, macs: list[str]) -> dict[str, Any]:
    from cloudinit.sources.helpers import openstack

    known_macs = None
    if macs:  # CLI takes NAME=MAC like `ip link`; cloud-init wants {mac: name}.
        known_macs = {mac.lower(): name for name, mac in (m.split("=", 1) for m in macs)}
    result: dict[str, Any] = openstack.ConfigDriveReader(path).read_v2()
    if "networkdata" in result:
        # A copy: convert_net_json rewrites services in place (type dns -> nameserver).
        network = copy.deepcopy(result["networkdata"])
        result["converted_network"] = openstack.convert_net_json(network, known_macs=known_macs)
    return result


def http_openstack(url: str, timeout: float, retries: int) -> dict[str, Any]:
    from cloudinit.sources.helpers import ec2, openstack

    class Reader(openstack.MetadataReader):  # type: ignore[misc]
        # MetadataReader's EC2 part calls ec2.get_instance_metadata() with the
        # default 169.254.169.254; a test server lives at base_url instead.
        def _read_ec2_metadata(self) -> Any:
            return ec2.get_instance_metadata(metadata_address=self.base_path, ssl_details=self.ssl_details,
                                             timeout=self.timeout, retries=self.retries)

    requests = _record_requests()
    result: dict[str, Any] = Reader(url, timeout=timeout, retries=retries).read_v2()
    result["requests"] = requests
    return result


def ec2_crawl(url: str, timeout: float, retries: int) -> dict[str, Any]:
    from cloudinit.sources.helpers import ec2

    requests = _record_requests()
    kwargs: dict[str, Any] = {"api_version": "2009-04-04", "metadata_address": url,
                              "timeout": timeout, "retries": retries}
    return {"meta-data": ec2.get_instance_metadata(**kwargs),
            "user-data": ec2.get_instance_userdata(**kwargs),
            "requests": requests}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_drive = sub.add_parser("drive")
    p_drive.add_argument("dir")
    p_drive.add_argument("--mac", action="append", default=[], metavar="NAME=MAC")
    for name in ("http-openstack", "ec2"):
        p = sub.add_parser(name)
        p.add_argument("url")
        p.add_argument("--timeout", type=float, default=5.0)
        p.add_argument("--retries", type=int, default=0)
    args = parser.parse_args(argv)

    out, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the JSON answer

    def answer(obj: dict[str, Any]) -> None:
        print(json.dumps(obj), file=out)

    try:
        from cloudinit import log as _ci_log  # noqa: F401 - its import resets the root logger
        from cloudinit import version
    except ImportError as e:
        answer({"ok": False, "unavailable": True, "error": f"{e}", "python": sys.executable})
        return 3
    capture = _Capture()
    logging.getLogger().addHandler(capture)
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        if args.command == "drive":
            raw = drive(args.dir, args.mac)
        elif args.command == "http-openstack":
            raw = http_openstack(args.url, args.timeout, args.retries)
        else:
            raw = ec2_crawl(args.url, args.timeout, args.retries)
    except Exception as e:
        answer({"ok": False, "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(), "log": capture.records})
        return 1
    b64: list[list[str]] = []
    result = _jsonable(raw, [], b64)
    result.update(base64_fields=b64, log=capture.records, cloudinit_version=version.version_string())
    answer({"ok": True, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
