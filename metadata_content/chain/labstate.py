"""What a lab is made of, as recorded in its state file (``lab.json``).

The state is written *before* each namespace or process is created, so that
``lab down`` can remove exactly what this lab made, also after ``lab up``
crashed half-way; hence every change goes through :meth:`LabState.save`.
Building the lab is :mod:`metadata_content.chain.lab`; this module only knows
the shape of the record and how it is read and written.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

STATE = "lab.json"
Mode = Literal["dhcp", "router", "both"]  # which proxies run
GuestPath = Literal["dhcp", "router"]  # which proxy a guest reaches 169.254.169.254 through
MODES: tuple[Mode, ...] = get_args(Mode)
GUEST_PATHS: tuple[GuestPath, ...] = get_args(GuestPath)
T = TypeVar("T")


class LabError(RuntimeError):
    """The lab cannot be built or used; ``str()`` says why."""


@dataclass
class Guest:
    """One guest: a namespace with one port on the lab network and its instance."""

    name: str  # g0, g1, ...
    ns: str
    ip: str
    mac: str
    uuid: str
    hostname: str  # the spec's, which is what meta_data.json says
    path: GuestPath

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Guest:
        return cls(name=data["name"], ns=data["ns"], ip=data["ip"], mac=data["mac"], uuid=data["uuid"],
                   hostname=data["hostname"], path=_one_of(data["path"], GUEST_PATHS, "guest path"))


@dataclass
class LabState:
    """One lab: its network, namespaces, processes (by pid), guests and files."""

    id: str
    dir: Path
    owned_dir: bool  # made by `up`, so `down` removes it whole
    mode: Mode
    cidr: str
    prefix: str  # of the lab's own namespace names
    network_id: str
    router_id: str
    project_id: str
    gateway: str  # the router's port
    dhcp_ip: str  # the DHCP port's
    data_dir: Path  # the store (SQLite)
    socket: Path  # the agent's
    secret_file: Path
    switch_ns: str
    dhcp_ns: str
    router_ns: str
    created: float
    namespaces: list[str] = field(default_factory=list)  # in creation order
    processes: dict[str, int] = field(default_factory=dict)  # service name -> pid (its process group)
    guests: list[Guest] = field(default_factory=list)
    api: str | None = None  # the API's URL, once chosen
    admin: str | None = None
    api_cmd: list[str] = field(default_factory=list)  # kept so that a restart is identical
    agent_cmd: list[str] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.dir / STATE

    def save(self) -> None:
        """Write the state file atomically (a crash leaves the old or the new one)."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str))  # Path -> str
        os.replace(tmp, self.state_file)

    def record_namespace(self, name: str) -> None:
        """Note *name* before it is created, so that `down` finds it whatever happens next."""
        self.namespaces.append(name)
        self.save()

    def record_process(self, name: str, pid: int) -> None:
        self.processes[name] = pid
        self.save()

    def guest(self, name: str) -> Guest:
        """A guest by name (g0), index (0), namespace or instance uuid."""
        for g in self.guests:
            if name in (g.name, g.ns, g.uuid, g.name[1:]):
                return g
        raise LabError(f"no guest {name!r} in the lab (have: {', '.join(g.name for g in self.guests)})")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(
            id=data["id"], dir=Path(data["dir"]), owned_dir=bool(data["owned_dir"]),
            mode=_one_of(data["mode"], MODES, "mode"), cidr=data["cidr"], prefix=data["prefix"],
            network_id=data["network_id"], router_id=data["router_id"], project_id=data["project_id"],
            gateway=data["gateway"], dhcp_ip=data["dhcp_ip"], data_dir=Path(data["data_dir"]),
            socket=Path(data["socket"]), secret_file=Path(data["secret_file"]),
            switch_ns=data["switch_ns"], dhcp_ns=data["dhcp_ns"], router_ns=data["router_ns"],
            created=float(data["created"]), namespaces=[str(n) for n in data["namespaces"]],
            processes={str(k): int(v) for k, v in data["processes"].items()},
            guests=[Guest.from_json(g) for g in data["guests"]],
            api=data.get("api"), admin=data.get("admin"),
            api_cmd=[str(a) for a in data.get("api_cmd") or []],
            agent_cmd=[str(a) for a in data.get("agent_cmd") or []],
        )


def load(lab_dir: Path) -> LabState:
    """The lab recorded in *lab_dir*; LabError when there is none or it cannot be read."""
    path = lab_dir / STATE
    try:
        return LabState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise LabError(f"no lab in {lab_dir} (run 'configdrive lab up')") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabError(f"{path} is not a lab state this version can read ({exc!r}); "
                       "remove the lab's namespaces with 'ip netns del' and the directory by hand") from None


def _one_of(value: object, allowed: tuple[T, ...], what: str) -> T:
    for choice in allowed:
        if value == choice:
            return choice
    raise ValueError(f"{what} {value!r} is not one of {', '.join(map(str, allowed))}")
