"""The instance store: registered specs, the indexes services look guests up
by, and the state guests write (the password).

SQLAlchemy Core over an embedded SQLite file (WAL, so many readers and one
writer across processes) or a PostgreSQL URL (several API hosts, one
database). The spec is stored as the self-contained JSON dict that
:func:`metadata_content.spec.read_spec` returns, so the store never needs the
spec's directory again.

Cross-process cache invalidation: every write to an instance appends its
uuid to ``changes`` (a monotonic sequence); API workers keep the last
sequence they saw and drop exactly the instances named since
(:class:`ChangeWatcher`).
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance

DB_FILE = "store.db"
KEEP_CHANGES = 10_000  # change-log rows kept; a worker further behind drops its whole cache
PASSWORD_MAX = 1020    # Nova: 4 chunks of 255 characters
NOTIFY_CHANNEL = "configdrive_changes"
# "Anything changed?" is a system call that releases the GIL, which costs
# throughput under load when asked on every request; once a millisecond per
# process is far below anything a client can observe (ChangeWatcher.due).
POLL_INTERVAL = 0.001


# (instance uuid, project id) pairs, and ids; the aliases also keep the builtin ``list``
# usable in annotations inside Store, which has a method of that name.
Owners = list[tuple[str, str | None]]
Ids = list[str]


class StoreError(Exception):
    """A request the store refuses (duplicate uuid, address in use, unknown id).
    ``str()`` is the message for the user; nothing was changed."""


def unavailable_reason(exc: BaseException) -> str | None:
    """One line saying why the database cannot be used right now (locked past
    the busy timeout, disk full, corrupt, unreachable), or None when *exc* is
    not such a fault (a bug, or a refused request). Callers answer these with
    503 or one error line instead of a traceback; the text is the driver's
    first line, so a caller that printed a URL must still redact it."""
    if not isinstance(exc, sa.exc.DBAPIError) or isinstance(
            exc, sa.exc.IntegrityError | sa.exc.ProgrammingError | sa.exc.DataError):
        return None
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.DatabaseError):
        return None
    orig = exc.orig if exc.orig is not None else exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]


@dataclass(frozen=True)
class Record:
    """One registered instance as stored."""

    uuid: str
    project_id: str | None
    name: str
    version: int
    spec: dict[str, Any]


def default_data_dir() -> Path:
    """``$CONFIGDRIVE_DATA``, else /var/lib/configdrive for root, else the XDG data dir."""
    if os.environ.get("CONFIGDRIVE_DATA"):
        return Path(os.environ["CONFIGDRIVE_DATA"])
    if os.geteuid() == 0:
        return Path("/var/lib/configdrive")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "configdrive"


def store_url(url: str | None = None, data_dir: str | Path | None = None) -> str:
    """A database URL: *url* as given, else the SQLite file in the data directory."""
    if url:
        return url
    folder = Path(data_dir) if data_dir else default_data_dir()
    private_data_dir(folder)
    private_database(folder / DB_FILE)
    return f"sqlite:///{folder.resolve() / DB_FILE}"


def private_data_dir(folder: Path) -> None:
    """Create the data directory 0711, or take read and write from others on an existing one.

    It holds every spec (admin_pass, user data), posted passwords and the IMDSv2
    token key. Others keep only search (x): libvirt's qemu user must reach
    ``<data dir>/images``; nothing can be listed. Group bits are the operator's.
    """
    folder.mkdir(mode=0o711, parents=True, exist_ok=True)
    mode = folder.stat().st_mode & 0o7777
    if mode & 0o006 and folder.stat().st_uid == os.geteuid():
        folder.chmod(mode & ~0o006)


def private_database(path: Path) -> None:
    """The SQLite file created 0600 before SQLite opens it: SQLite gives its WAL and
    SHM files the database's mode. Existing files lose every permission of others;
    a group the operator granted (g+rw on the files) is kept."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            info = name.stat()
            if info.st_mode & 0o007 and info.st_uid == os.geteuid():
                name.chmod(info.st_mode & 0o770)
        except FileNotFoundError:
            pass


def normalise_ip(ip: str) -> str:
    """Canonical text of an address (IPv4-mapped IPv6 -> IPv4), or the input if it is none."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


schema = sa.MetaData()
instances = sa.Table(
    "instances", schema,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(255), index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False))
ports = sa.Table(
    "ports", schema,
    sa.Column("network_id", sa.String(64), primary_key=True),
    sa.Column("ip", sa.String(64), primary_key=True),
    sa.Column("mac", sa.String(17), index=True),
    sa.Column("instance_uuid", sa.String(36),
              sa.ForeignKey("instances.uuid", ondelete="CASCADE"), nullable=False, index=True),
    sa.Index("ix_ports_ip", "ip"))
routers = sa.Table(
    "routers", schema,
    sa.Column("router_id", sa.String(64), primary_key=True),
    sa.Column("network_id", sa.String(64), primary_key=True))
passwords = sa.Table(
    "passwords", schema,
    sa.Column("instance_uuid", sa.String(36),
              sa.ForeignKey("instances.uuid", ondelete="CASCADE"), primary_key=True),
    sa.Column("value", sa.Text, nullable=False))
changes = sa.Table(
    "changes", schema,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False),
    sqlite_autoincrement=True)
settings = sa.Table(
    "settings", schema,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False))


class Store:
    """All reads and writes of registered instances. Safe to share between threads."""

    def __init__(self, url: str | None = None, data_dir: str | Path | None = None):
        self.url = store_url(url, data_dir)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.url.startswith("postgresql://"):
            self.url = "postgresql+psycopg://" + self.url[len("postgresql://"):]
        if not self.is_sqlite:
            kwargs["pool_pre_ping"] = True
        self.engine = sa.create_engine(self.url, **kwargs)
        # The INSERT with ON CONFLICT of the dialect create_engine has just loaded:
        # imported here, not at the top, so that no process loads both dialects
        # (PostgreSQL's costs SQLite users tens of milliseconds of start-up).
        self._insert: Callable[[sa.Table], Any]
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            self._insert = sqlite_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            self._insert = postgresql_insert
        schema.create_all(self.engine)

    @property
    def sqlite_path(self) -> str | None:
        return self.engine.url.database if self.is_sqlite else None

    def close(self) -> None:
        self.engine.dispose()

    # -- writes --------------------------------------------------------------

    def add(self, items: list[tuple[dict[str, Any], Instance]]) -> None:
        """Register validated instances, all or none: a duplicate uuid or a fixed
        IP already used on the same network refuses the whole batch."""
        with self._write() as conn:
            for spec, instance in items:
                if self._exists(conn, instance.uuid):
                    raise StoreError(f"instance {instance.uuid} is already registered "
                                     f"(use 'configdrive instances update')")
                conn.execute(instances.insert().values(
                    uuid=instance.uuid, project_id=instance.project_id, name=instance.name,
                    spec=json.dumps(spec), version=1, updated_at=time.time()))
                self._insert_ports(conn, instance)
                self._log_change(conn, instance.uuid)

    def update(self, spec: dict[str, Any], instance: Instance) -> int:
        """Replace a registered instance's spec (keeps its password); the new version."""
        with self._write() as conn:
            row = conn.execute(sa.select(instances.c.version).where(instances.c.uuid == instance.uuid)).first()
            if row is None:
                raise StoreError(f"instance {instance.uuid} is not registered (use 'configdrive instances add')")
            conn.execute(ports.delete().where(ports.c.instance_uuid == instance.uuid))
            self._insert_ports(conn, instance)
            version = row[0] + 1
            conn.execute(instances.update().where(instances.c.uuid == instance.uuid).values(
                project_id=instance.project_id, name=instance.name, spec=json.dumps(spec),
                version=version, updated_at=time.time()))
            self._log_change(conn, instance.uuid)
        return version

    def remove(self, *uuids: str) -> None:
        """Unregister instances (passwords too), all or none, as :meth:`add`:
        an unknown uuid refuses the whole batch."""
        wanted = list(dict.fromkeys(uuids))
        with self._write() as conn:
            for uuid in wanted:
                if not self._exists(conn, uuid):
                    raise StoreError(f"instance {uuid} is not registered")
            for table in (ports, passwords):
                conn.execute(table.delete().where(table.c.instance_uuid.in_(wanted)))
            conn.execute(instances.delete().where(instances.c.uuid.in_(wanted)))
            for uuid in wanted:
                self._log_change(conn, uuid)

    def set_router_networks(self, router_id: str, network_ids: list[str]) -> None:
        """Which networks a router serves (the agent's router-side port lookup)."""
        with self._write() as conn:
            conn.execute(routers.delete().where(routers.c.router_id == router_id))
            for net in dict.fromkeys(network_ids):
                conn.execute(routers.insert().values(router_id=router_id, network_id=net))
            # Agents cache router -> networks too; any change-log entry makes them drop it.
            self._log_change(conn, f"router:{router_id}")

    def ports_on(self, network_id: str) -> list[tuple[str, str, str]]:
        """(mac, ip, instance uuid) of every port on *network_id* that has a MAC (DHCP hosts)."""
        p = ports.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(p.mac, p.ip, p.instance_uuid)
                                .where(p.network_id == network_id, p.mac.is_not(None))
                                .order_by(p.ip)).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def set_password_once(self, uuid: str, value: str) -> bool:
        """Store a guest's password unless one is set: True for the one caller that wins.

        A single conditional statement (insert, or overwrite an empty value),
        so exactly one of many concurrent callers, in any process, wins.
        """
        stmt = self._insert(passwords).values(instance_uuid=uuid, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=[passwords.c.instance_uuid],
                                          set_={"value": stmt.excluded.value}, where=passwords.c.value == "")
        # RETURNING, not rowcount: psycopg reports -1 for this statement.
        with self.engine.begin() as conn:
            return conn.execute(stmt.returning(passwords.c.instance_uuid)).first() is not None

    def clear_password(self, uuid: str) -> None:
        """Forget the password (Nova's clear-password), so the guest may post a new one."""
        with self.engine.begin() as conn:
            conn.execute(passwords.delete().where(passwords.c.instance_uuid == uuid))

    # -- reads ---------------------------------------------------------------

    def get(self, uuid: str) -> Record | None:
        c = instances.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(c.uuid, c.project_id, c.name, c.version, c.spec)
                               .where(c.uuid == uuid)).first()
        if row is None:
            return None
        return Record(row[0], row[1], row[2], row[3], json.loads(row[4]))

    def version(self, uuid: str) -> int | None:
        """The instance's version counter (bumped by every update), None if unknown."""
        c = instances.c
        with self.engine.connect() as conn:
            return conn.execute(sa.select(c.version).where(c.uuid == uuid)).scalar()

    def list(self) -> list[Record]:
        """Every instance, without specs (``spec`` is empty), by name."""
        c = instances.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.uuid, c.project_id, c.name, c.version)
                                .order_by(c.name, c.uuid)).all()
        return [Record(r[0], r[1], r[2], r[3], {}) for r in rows]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(instances)).scalar_one())

    def find_by_address(self, ip: str, network_ids: Sequence[str] | None = None) -> Owners:
        """(uuid, project) of instances owning fixed *ip*, on *network_ids* if given."""
        return self._port_owners(ports.c.ip == normalise_ip(ip), network_ids)

    def find_by_mac(self, mac: str, network_ids: Sequence[str] | None = None) -> Owners:
        """(uuid, project) of instances with a port of MAC *mac* (IPv6 link-local sources)."""
        return self._port_owners(ports.c.mac == mac.lower(), network_ids)

    def _port_owners(self, match: Any, network_ids: Sequence[str] | None) -> Owners:
        """(uuid, project) of the instances with a port matching *match*, once each."""
        p, i = ports.c, instances.c
        q = sa.select(p.instance_uuid, i.project_id).join(instances, p.instance_uuid == i.uuid).where(match)
        if network_ids is not None:
            q = q.where(p.network_id.in_(network_ids))
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in dict.fromkeys(tuple(r) for r in conn.execute(q))]

    def router_networks(self, router_id: str) -> Ids:
        c = routers.c
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(c.network_id).where(c.router_id == router_id)
                                               .order_by(c.network_id))]

    def get_password(self, uuid: str) -> str | None:
        c = passwords.c
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(c.value).where(c.instance_uuid == uuid)).scalar()
        return value or None

    def setting(self, key: str, make: Any = lambda: secrets.token_hex(32)) -> str:
        """A persistent value shared by every process (created once, first writer wins)."""
        c = settings.c
        stmt = self._insert(settings).values(key=key, value=make()).on_conflict_do_nothing(index_elements=[c.key])
        with self.engine.begin() as conn:
            conn.execute(stmt)
            return conn.execute(sa.select(c.value).where(c.key == key)).scalar_one()

    def ping(self) -> None:
        """Raise when the database cannot be reached or, for SQLite, is corrupt
        (``/healthz``): ``SELECT 1`` alone reads no page, so a damaged file
        passed while every request failed; ``quick_check`` reads them all
        (milliseconds for a store of thousands of instances)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        path = self.sqlite_path
        if path and path != ":memory:":
            # a connection of its own: a pooled one may answer from pages cached
            # before the file was damaged
            try:
                check = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                try:
                    result = check.execute("PRAGMA quick_check(1)").fetchone()[0]
                finally:
                    check.close()
            except sqlite3.Error as err:
                raise sa.exc.DatabaseError("PRAGMA quick_check", None, err) from err
            if result != "ok":
                raise sa.exc.DatabaseError("PRAGMA quick_check", None, Exception(str(result)))

    # -- change log ----------------------------------------------------------

    def last_change(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(changes.c.seq), 0))).scalar_one())

    def changes_since(self, seq: int) -> tuple[int, Ids | None]:
        """(newest seq, uuids changed after *seq*), or None for the uuids when the log
        no longer reaches back that far (the caller forgets everything)."""
        c = changes.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.seq, c.uuid).where(c.seq > seq).order_by(c.seq)).all()
            if not rows:
                return seq, []
            if rows[0][0] != seq + 1:
                oldest = conn.execute(sa.select(sa.func.min(c.seq))).scalar_one()
                if oldest > seq + 1:
                    return rows[-1][0], None
        return rows[-1][0], list(dict.fromkeys(r[1] for r in rows))

    # -- helpers -------------------------------------------------------------

    def _exists(self, conn: Any, uuid: str) -> bool:
        c = instances.c
        return conn.execute(sa.select(c.uuid).where(c.uuid == uuid)).first() is not None

    def _insert_ports(self, conn: Any, instance: Instance) -> None:
        p = ports.c
        seen: set[tuple[str, str]] = set()
        for port in instance.ports():
            key = (port.network_id or "", normalise_ip(port.ip))
            if key in seen:
                continue
            seen.add(key)
            owner = conn.execute(sa.select(p.instance_uuid).where(p.network_id == key[0], p.ip == key[1])).scalar()
            if owner is not None:
                where = f"network {key[0]}" if key[0] else "a port without network_id"
                raise StoreError(f"fixed IP {key[1]} on {where} is already used by instance {owner}")
            conn.execute(ports.insert().values(
                network_id=key[0], ip=key[1], mac=(port.mac or "").lower() or None,
                instance_uuid=instance.uuid))

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """The transaction of every write that calls :meth:`_log_change`: the
        change-log lock comes first, so sequence numbers commit in order."""
        with self.engine.begin() as conn:
            self._lock_changes(conn)
            yield conn

    def _log_change(self, conn: Any, uuid: str) -> None:
        """Append *uuid* to the change log; only inside :meth:`_write`."""
        seq = conn.execute(changes.insert().values(uuid=uuid)).inserted_primary_key[0]
        conn.execute(changes.delete().where(changes.c.seq <= seq - KEEP_CHANGES))
        if not self.is_sqlite:
            conn.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))  # delivered at commit

    def _lock_changes(self, conn: Any) -> None:
        """Serialise writers on PostgreSQL so change-log sequence numbers commit in
        order (a reader must never see seq N+1 before N). SQLite has one writer."""
        if self.is_sqlite:
            # Take the write lock first: a deferred transaction that has read
            # cannot upgrade under contention and would fail instead of waiting.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(sa.text("LOCK TABLE changes IN EXCLUSIVE MODE"))


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    """WAL for concurrent readers and writers across processes; wait, do not fail, on locks."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 10000")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


class ChangeWatcher:
    """Tells one process which instances changed in the store since it last asked.

    The change log is read only when something may have changed:

    * SQLite: ``PRAGMA data_version`` on a private connection per thread,
      which moves whenever any other connection, in any process, commits;
    * PostgreSQL: a private LISTEN connection; writers NOTIFY on commit, and a
      zero-timeout ``select()`` on its socket says whether any notification
      arrived. Without it (connection lost) every poll reads the log, and the
      next poll reconnects.

    Both checks release the GIL, so callers ask only when :meth:`due` says so.
    """

    def __init__(self, store: Store):
        self.store = store
        self._path = store.sqlite_path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pg: Any = None
        self._next_poll = 0.0
        if self._path is None:
            self._listen()  # before reading the log: no change can fall in between
        self.seq = store.last_change()

    def due(self) -> bool:
        """True at most once per :data:`POLL_INTERVAL`: whether to :meth:`poll` now.
        Unlocked: two threads racing both poll, which is harmless."""
        now = time.monotonic()
        if now < self._next_poll:
            return False
        self._next_poll = now + POLL_INTERVAL
        return True

    def _listen(self) -> None:
        try:
            # psycopg is the optional "postgres" extra: SQLite installs lack it.
            import psycopg

            url = self.store.engine.url.set(drivername="postgresql")
            conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._pg = conn
        except Exception:
            self._pg = None

    def _sqlite(self) -> sqlite3.Connection:
        """This thread's private connection (an sqlite3 connection stays in its thread)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            assert self._path is not None
            conn = sqlite3.connect(self._path, check_same_thread=True, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 10000")
            self._local.conn = conn
            self._local.version = None
        return conn

    def _sqlite_changed(self) -> bool:
        version = self._sqlite().execute("PRAGMA data_version").fetchone()[0]
        if version == self._local.version:
            return False
        self._local.version = version
        return True

    def _pg_changed(self) -> bool:
        if self._pg is None:
            self._listen()
            return True  # whatever happened while not listening is in the log
        try:
            ready, _, _ = select.select([self._pg.fileno()], [], [], 0)
            if ready:
                with self._lock:
                    self._pg.execute("SELECT 1")  # consumes the queued notifications
            return bool(ready)
        except Exception:
            self._pg = None
            return True

    def version(self, uuid: str) -> int | None:
        """The instance's version counter through the watcher's private connection:
        tens of microseconds on SQLite, where the pooled SQLAlchemy path costs ~0.6 ms."""
        if self._path is not None:
            row = self._sqlite().execute("SELECT version FROM instances WHERE uuid = ?", (uuid,)).fetchone()
            return None if row is None else int(row[0])
        if self._pg is not None:
            try:
                with self._lock:
                    row = self._pg.execute("SELECT version FROM instances WHERE uuid = %s", (uuid,)).fetchone()
                return None if row is None else int(row[0])
            except Exception:
                self._pg = None
        return self.store.version(uuid)

    def poll(self) -> list[str] | None:
        """Uuids changed since the last poll (usually []), or None: forget everything."""
        changed = self._sqlite_changed() if self._path is not None else self._pg_changed()
        if not changed:
            return []
        with self._lock:
            newest, uuids = self.store.changes_since(self.seq)
            self.seq = max(self.seq, newest)
        return uuids
