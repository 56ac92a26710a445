"""Render a network_data.json with Debian's real cloud-init network renderers.

Runs under Debian's /usr/bin/python3 (where the `cloud-init` package puts the
`cloudinit` modules), never under the project venv; tests reach it through
tests/support/readers.py. The path is cloud-init's own for an OpenStack
guest: convert_net_json (what DataSourceConfigDrive does with the drive's
network_data.json), parse_net_config_data, then each renderer writes into a
scratch target, as `cloud-init init` writes into / on a guest.

    cloudinit_render_probe.py NETWORK_DATA_JSON TARGET [--mac NAME=MAC ...]

stdout is one JSON object: {"ok": true, "result": {"files": {relative path:
text}, "converted": ..., "cloudinit_version": ...}} or {"ok": false, "error":
..., "traceback": ...}. --mac gives cloud-init's {mac: name} map for the
physical links, so that it never looks at this machine's interfaces.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import traceback
from typing import Any

RENDERERS = ("eni", "netplan", "sysconfig", "networkd")


def render(network_data: str, target: str, macs: list[str]) -> dict[str, Any]:
    from cloudinit import version
    from cloudinit.distros import rhel
    from cloudinit.net import eni, netplan, network_state, networkd, sysconfig
    from cloudinit.sources.helpers import openstack

    with open(network_data, encoding="utf-8") as fh:
        data = json.load(fh)
    known_macs = {mac.lower(): name for name, mac in (m.split("=", 1) for m in macs)}
    converted = openstack.convert_net_json(copy.deepcopy(data), known_macs=known_macs)
    state = network_state.parse_net_config_data(converted)
    renderers = {
        "eni": eni.Renderer(),
        "netplan": netplan.Renderer({"postcmds": False}),  # no `netplan generate` on this host
        # sysconfig has no paths of its own: a RHEL guest's distro hands them over.
        "sysconfig": sysconfig.Renderer(rhel.Distro.renderer_configs["sysconfig"]),
        "networkd": networkd.Renderer(),
    }
    files: dict[str, str] = {}
    for name in RENDERERS:
        root = os.path.join(target, name)
        os.makedirs(root, exist_ok=True)
        renderers[name].render_network_state(state, target=root)
        for directory, _dirs, names in os.walk(root):
            for file in names:
                path = os.path.join(directory, file)
                with open(path, encoding="utf-8") as fh:
                    files[os.path.relpath(path, target)] = fh.read()
    return {"files": files, "converted": converted, "cloudinit_version": version.version_string()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network_data")
    parser.add_argument("target")
    parser.add_argument("--mac", action="append", default=[], metavar="NAME=MAC")
    args = parser.parse_args(argv)
    out, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the JSON answer
    try:
        result = render(args.network_data, args.target, args.mac)
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}),
              file=out)
        return 1
    print(json.dumps({"ok": True, "result": result}, default=repr), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
