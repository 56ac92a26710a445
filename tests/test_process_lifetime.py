"""The services' processes as a whole: workers die with their main process,
a start never shares its address with another generation, and a taken
address ends the start with one line and nothing left running.

Everything here is a real `configdrive serve api|agent` process; each test
finds the processes it started by an environment marker (so also the ones
that outlive their parent) and kills them by pid, also when it fails.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata_content.chain.processes import alive
from tests.conftest import CLI, ROOT
from tests.support.api_support import prepare
from tests.support.apiserver import api_server, free_port

MARK = "PROCTEST_MARK"  # not CONFIGDRIVE_*: the settings refuse unknown keys there


def marked(token: str) -> list[int]:
    """Every live process whose environment carries MARK=token."""
    want = f"{MARK}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if want in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0") and alive(int(entry)):
                found.append(int(entry))
    return found


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    """The pids of *pids* still alive after *seconds* (at most)."""
    deadline = time.monotonic() + seconds
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


@pytest.fixture
def token() -> Iterator[str]:
    """A fresh marker; whatever still carries it at the end is SIGKILLed by pid."""
    value = uuid.uuid4().hex
    yield value
    for pid in marked(value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not wait_gone(marked(value), 10)


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_api_workers_die_with_a_killed_main_process(tmp_path: Path, token: str) -> None:
    """kill -9 of the API's main process: every worker is gone within seconds, and
    the API restarted on the same address (now with IMDSv2 required) answers alone."""
    data, secret = prepare(tmp_path, "webserver")
    port, admin_port = free_port(), free_port()
    env = {MARK: token}
    with api_server(tmp_path, "--data-dir", str(data), "--secret-file", str(secret), env=env,
                    port=port, admin_port=admin_port) as api:
        assert _get(port, "/latest/meta-data/") == 400  # proxy mode, no identity headers: served
        workers = [p for p in marked(token) if p != api.proc.pid]
        assert len(workers) >= 2, workers  # two workers (and multiprocessing's resource tracker)
        os.kill(api.proc.pid, signal.SIGKILL)
        api.proc.wait(timeout=10)
        assert wait_gone(workers, 10) == [], "workers outlived their main process"
    with api_server(tmp_path, "--data-dir", str(data), "--secret-file", str(secret), "--imds-v2", "required",
                    env=env, port=port, admin_port=admin_port):
        statuses = [_get(port, "/latest/meta-data/") for _ in range(40)]
    assert statuses == [401] * 40


def test_api_workers_exit_when_the_main_process_died_before_they_started(tmp_path: Path, token: str) -> None:
    """The race: main killed while its workers still import (before the death signal is
    armed); they must notice the lost parent themselves and exit, not serve as orphans."""
    data, secret = prepare(tmp_path, "webserver")
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "api", "--data-dir", str(data), "--secret-file", str(secret),
                             "--workers", "2", "--bind", f"127.0.0.1:{port}", "--admin-bind",
                             f"127.0.0.1:{free_port()}"], cwd=ROOT, env={**os.environ, MARK: token},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while not workers and time.monotonic() < deadline:
        workers = [p for p in marked(token) if b"spawn_main" in _cmdline(p) and _ppid(p) == proc.pid]
        time.sleep(0.005)
    assert workers, "no worker was spawned"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert wait_gone(marked(token), 20) == [], "workers started after their main process died kept running"
    with pytest.raises(OSError):
        _get(port, "/latest/meta-data/")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def test_api_refuses_an_address_another_process_listens_on(tmp_path: Path, token: str) -> None:
    """A listener with SO_REUSEPORT (as granian's workers bind) on --bind: the API must not
    serve beside it (an old generation would keep answering); one line, exit 1, nothing left."""
    data, secret = prepare(tmp_path, "webserver")
    port = free_port()
    with socket.socket() as stranger:
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        stranger.bind(("127.0.0.1", port))
        stranger.listen()
        proc = _run_api(tmp_path, token, data, secret, "--bind", f"127.0.0.1:{port}",
                        "--admin-bind", f"127.0.0.1:{free_port()}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert lines[-1].startswith("error: ") and f"127.0.0.1:{port}" in lines[-1] and "--bind" in lines[-1], lines
    assert "Traceback" not in proc.stderr
    assert wait_gone(marked(token), 5) == []


def test_api_with_its_admin_address_taken_says_so_and_leaves_nothing(tmp_path: Path, token: str) -> None:
    """The admin address held by another API: one line naming it and --admin-bind, exit 1,
    no worker left; `serve api --help` says how to run two APIs on one host."""
    data, secret = prepare(tmp_path, "webserver")
    with api_server(tmp_path, "--data-dir", str(data), "--secret-file", str(secret), workers=1) as first:
        proc = _run_api(tmp_path, token, data, secret, "--bind", f"127.0.0.1:{free_port()}",
                        "--admin-bind", f"127.0.0.1:{first.admin_port}")
        assert first.admin("/healthz").status == 200  # the first one is untouched
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"127.0.0.1:{first.admin_port}" in last and "--admin-bind" in last, last
    assert wait_gone(marked(token), 5) == []
    helptext = subprocess.run([*CLI, "serve", "api", "--help"], capture_output=True, text=True, cwd=ROOT,
                              timeout=60, check=True).stdout
    assert "two APIs" in " ".join(helptext.split())


def _run_api(tmp: Path, token: str, data: Path, secret: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`serve api` expected to give up: its result, or a failure after 30 s (then killed by pid)."""
    proc = subprocess.Popen([*CLI, "serve", "api", "--data-dir", str(data), "--secret-file", str(secret),
                             "--workers", "2", *args], cwd=ROOT, env={**os.environ, MARK: token},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        for pid in marked(token):  # its workers too: they hold the pipes open
            os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise AssertionError("serve api kept running on a taken address") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _start_agent(tmp: Path, token: str, data: Path, secret: Path, sock: Path) -> subprocess.Popen[bytes]:
    log = open(tmp / "agent.log", "ab")  # noqa: SIM115 - closed right after Popen
    with log:
        proc = subprocess.Popen([sys.executable, "-m", "configdrive", "serve", "agent", "--socket", str(sock),
                                 "--api", "http://127.0.0.1:9", "--secret-file", str(secret),
                                 "--data-dir", str(data), "--workers", "2"],
                                cwd=ROOT, env={**os.environ, MARK: token}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited {proc.returncode}: {(tmp / 'agent.log').read_text()}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(sock))
            if len(marked(token)) >= 3:  # main and both workers
                return proc
        time.sleep(0.05)
    raise AssertionError(f"agent did not start: {(tmp / 'agent.log').read_text()}")


def test_agent_workers_die_with_a_killed_main_process(tmp_path: Path, token: str) -> None:
    """kill -9 of the agent's main process: its workers go too, so a new agent
    can take the socket (it refuses while anything still serves there)."""
    data, secret = prepare(tmp_path, "webserver")
    sock = tmp_path / "agent.sock"
    first = _start_agent(tmp_path, token, data, secret, sock)
    workers = [p for p in marked(token) if p != first.pid]
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert wait_gone(workers, 10) == [], "agent workers outlived their main process"
    second = _start_agent(tmp_path, token, data, secret, sock)
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=20)


def test_lab_status_and_doctor_agree_after_the_api_is_killed(tmp_path: Path) -> None:
    """kill -9 of the lab's API (main process): `lab status` and `doctor` must tell the
    same story, the API is down, and nothing of it keeps answering. Restarted, both say up."""
    from metadata_content.chain import lab as labmod
    from metadata_content.chain.doctor import diagnose_lab
    from tests.support.chainlab import running_lab

    with running_lab(tmp_path / "lab", api_workers=2) as lab:
        api_pid = lab.processes["api"]
        group = [p for p in labmod.lab_pids(lab.dir) if os.getpgid(p) == api_pid]
        assert len(group) >= 3, group  # main and two workers
        os.kill(api_pid, signal.SIGKILL)
        assert wait_gone(group, 10) == [], "the API's workers outlived it"
        api = labmod.status(lab)["processes"]["api"]
        assert api["running"] is False and api["orphans"] == [], api
        for _guest, steps in diagnose_lab(lab.dir):
            assert not steps[-1].ok and steps[-1].what == "API", steps[-1]
        labmod.start_api(lab)
        assert labmod.status(lab)["processes"]["api"]["running"] is True
        assert all(steps[-1].ok for _guest, steps in diagnose_lab(lab.dir))
