"""Benchmark the HTTP chain from inside a guest namespace (root; uses the lab).

    .venv/bin/python bench/chain.py [--seconds 10] [--identities 500]

1. wrk from a guest at 16 and 64 connections on meta_data.json through
   (a) the full chain: haproxy -> agent -> API, and
   (b) its ceiling, measured in the same run: the same haproxy reloaded to point
       at a constant responder on a UNIX socket (same server, granian WSGI).
   Target: (a) >= 0.5 x (b), zero errors at 64 connections.
   Also (c), the bound of the chain's shape on this machine: the same haproxy
   and agent with the API replaced by the same constant responder (TCP), so
   the second hop costs only its HTTP exchange.
2. Mass boot: N identities (addresses of one namespace, each its own instance)
   crawl like cloud-init (~25 requests, a new connection each) all at once;
   every answer is checked against the identity that asked.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTANT = b'{"uuid": "constant"}'
CRAWL = ["/openstack", "/openstack/latest/meta_data.json", "/openstack/latest/network_data.json",
         "/openstack/latest/user_data", "/openstack/latest/vendor_data.json",
         "/openstack/latest/vendor_data2.json", "/openstack/2012-08-10/meta_data.json",
         "/2009-04-04/meta-data/", "/2009-04-04/meta-data/ami-id", "/2009-04-04/meta-data/ami-launch-index",
         "/2009-04-04/meta-data/ami-manifest-path", "/2009-04-04/meta-data/block-device-mapping/",
         "/2009-04-04/meta-data/hostname", "/2009-04-04/meta-data/instance-action",
         "/2009-04-04/meta-data/instance-id", "/2009-04-04/meta-data/instance-type",
         "/2009-04-04/meta-data/local-hostname", "/2009-04-04/meta-data/local-ipv4",
         "/2009-04-04/meta-data/placement/", "/2009-04-04/meta-data/placement/availability-zone",
         "/2009-04-04/meta-data/public-hostname", "/2009-04-04/meta-data/public-ipv4",
         "/2009-04-04/meta-data/reservation-id", "/2009-04-04/meta-data/security-groups",
         "/2009-04-04/user-data"]


def constant_app(environ, start_response):
    """The ceiling's upstream: answers every request with the same small body."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(CONSTANT)))])
    return [CONSTANT]


def constant(env: dict[str, str], lab_dir: Path, where: list[str]) -> None:
    """Start constant_app under granian (WSGI) at *where* (a lab process: `down` stops it)."""
    with open(lab_dir / "constant.log", "ab") as log:
        subprocess.Popen([sys.executable, "-m", "granian", "--interface", "wsgi", *where, "--no-ws",
                          "bench.chain:constant_app"],
                         cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)


def wrk(ns: str, url: str, connections: int, seconds: int) -> dict[str, float]:
    """wrk inside *ns*: requests/s, p50/p99 in ms, errors (socket errors + non-2xx)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "wrk", "-t", "2", "-c", str(connections),
                          "-d", f"{seconds}s", "--latency", "--timeout", "10s", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50"), "p99": ms("99"), "errors": errors}


def crawl_main(spec_file: str) -> None:
    """Inside the mass namespace: every identity crawls at once; prints a JSON summary."""
    import http.client
    import threading

    identities = json.loads(Path(spec_file).read_text())
    results = {"requests": 0, "wrong": 0, "failed": 0, "done": 0, "examples": []}
    lock = threading.Lock()
    start = threading.Barrier(len(identities))

    def one(ident: dict[str, str]) -> None:
        wrong = failed = count = 0
        notes = []
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait(timeout=60)
        for path in CRAWL:
            try:
                conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=60,
                                                  source_address=(ident["ip"], 0))
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
            except OSError as exc:
                failed += 1
                notes.append(f"{ident['ip']} {path}: {exc}")
                continue
            count += 1
            if resp.status != 200:
                failed += 1
                notes.append(f"{ident['ip']} {path}: {resp.status}")
                continue
            if ((path.endswith("meta_data.json") and json.loads(body).get("uuid") != ident["uuid"])
                    or (path.endswith("local-ipv4") and body.decode() != ident["ip"])
                    or (path.endswith("/hostname") and not body.decode().startswith(ident["hostname"]))):
                wrong += 1
        with lock:
            results["requests"] += count
            results["wrong"] += wrong
            results["failed"] += failed
            results["done"] += 1 if not failed else 0
            results["examples"] = (results["examples"] + notes)[:5]

    threads = [threading.Thread(target=one, args=(i,)) for i in identities]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    results["wall_s"] = round(time.monotonic() - began, 2)
    results["identities"] = len(identities)
    print(json.dumps(results))


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from metadata_content.chain import lab as labmod

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--agent-workers", type=int, default=1)
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/chain.py needs root (network namespaces)", file=sys.stderr)
        return 2
    lab_dir = Path(tempfile.mkdtemp(prefix="cdbench-")) / "lab"
    state = labmod.up(lab_dir, guests=1, mode="dhcp", cidr="10.98.0.0/22",
                      api_workers=args.api_workers, agent_workers=args.agent_workers)
    results: dict[str, object] = {}
    constant_sock = str(lab_dir / "constant.sock")
    try:
        g0 = state.guests[0].ns
        url = "http://169.254.169.254/openstack/latest/meta_data.json"
        subprocess.run(["ip", "netns", "exec", g0, "curl", "-sf", "-o", "/dev/null", url], check=True)
        for c in (16, 64):
            results[f"chain_c{c}"] = wrk(g0, url, c, args.seconds)
        env = {**os.environ, labmod.LAB_ENV: str(state.dir), "PYTHONPATH": str(ROOT)}
        # (c) the hop bound: the agent in front of a constant responder instead of the API
        port = labmod._free_port()
        constant(env, lab_dir, ["--host", "127.0.0.1", "--port", str(port), "--workers", str(args.api_workers)])
        labmod._wait(lambda: labmod._tcp_open(port), "the constant responder on TCP")
        agent_cmd = list(state.agent_cmd)
        state.agent_cmd[agent_cmd.index("--api") + 1] = f"http://127.0.0.1:{port}"
        labmod.stop_process(state, "agent")
        labmod.start_agent(state)
        for c in (16, 64):
            results[f"hop_c{c}"] = wrk(g0, url, c, args.seconds)
        state.agent_cmd = agent_cmd
        labmod.stop_process(state, "agent")
        labmod.start_agent(state)
        # (b) the ceiling: the same haproxy, reloaded onto a constant responder
        constant(env, lab_dir, ["--uds", constant_sock, "--workers", str(args.agent_workers)])
        labmod._wait(lambda: labmod._unix_open(constant_sock), "the constant responder")
        labmod.start_proxy(state, "dhcp", socket_path=constant_sock)
        time.sleep(0.5)
        for c in (16, 64):
            results[f"ceiling_c{c}"] = wrk(g0, url, c, args.seconds)
        labmod.start_proxy(state, "dhcp")
        time.sleep(0.5)
        for c in (16, 64):
            chain, ceiling = results[f"chain_c{c}"], results[f"ceiling_c{c}"]
            results[f"ratio_c{c}"] = round(chain["rps"] / ceiling["rps"], 2) if ceiling["rps"] else 0.0
            results[f"hop_ratio_c{c}"] = round(results[f"hop_c{c}"]["rps"] / ceiling["rps"], 2) \
                if ceiling["rps"] else 0.0
        # mass boot
        if args.identities:
            began = time.monotonic()
            mass = labmod.add_identities(state, args.identities)
            results["mass_setup_s"] = round(time.monotonic() - began, 2)
            spec_file = lab_dir / "identities.json"
            spec_file.write_text(json.dumps(mass["identities"]))
            proc = subprocess.run(["ip", "netns", "exec", mass["namespace"], sys.executable, __file__,
                                   "--crawl", str(spec_file)], capture_output=True, text=True, timeout=600)
            results["mass_boot"] = json.loads(proc.stdout) if proc.returncode == 0 else proc.stderr[-2000:]
    finally:
        labmod.down(lab_dir)
    print(json.dumps(results, indent=1))
    print()
    print(f"{'':14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for key in ("chain_c16", "hop_c16", "ceiling_c16", "chain_c64", "hop_c64", "ceiling_c64"):
        r = results[key]
        assert isinstance(r, dict)
        print(f"{key:14}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['errors']:>8}")
    print(f"chain/ceiling: c16 {results['ratio_c16']}, c64 {results['ratio_c64']} (target >= 0.5)")
    print(f"hop bound/ceiling (API replaced by a constant): c16 {results['hop_ratio_c16']}, "
          f"c64 {results['hop_ratio_c64']}")
    mb = results.get("mass_boot")
    if isinstance(mb, dict):
        print(f"mass boot: {mb['identities']} identities x {len(CRAWL)} requests: {mb['done']} complete, "
              f"{mb['wrong']} wrong, {mb['failed']} failed, wall {mb['wall_s']} s")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--crawl":
        crawl_main(sys.argv[2])
    else:
        sys.exit(main())
