"""Who gets a config drive: Nova's required_by, and `sync` applying it.

The sync tests run on libvirt's ``test:///default`` driver with a real
instance store in a temporary directory: exactly the domains the policy
selects get a drive, the rest (and every unregistered domain) are untouched.
"""
from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt  # libvirt-python, in the test extra: a missing module fails, never skips
import pytest

from hypervisor import attach, devices, policy
from hypervisor.connection import open_connection
from hypervisor.sync import store_lookup, sync
from metadata_content.settings import ConfigError
from metadata_content.spec import instance_from_data
from metadata_content.store import Store


def _instance(**extra: Any) -> Any:
    data = {"uuid": str(uuidlib.uuid4()), "hostname": "policy-test", **extra}
    return instance_from_data(data, "test")


MANDATORY = {"image": {"properties": {"img_config_drive": "mandatory"}}}
OPTIONAL = {"image": {"properties": {"img_config_drive": "optional"}}}


@pytest.mark.parametrize("extra,force,launched,has_drive,required", [
    ({}, False, False, False, False),
    ({"config_drive": True}, False, False, False, True),
    ({"config_drive": True}, False, True, False, True),
    (MANDATORY, False, True, False, True),
    (OPTIONAL, False, False, False, False),
    ({}, True, False, False, True),            # force: new domains only (Nova's launched_at rule)
    ({}, True, True, False, False),
    ({}, False, True, True, True),             # a drive, once given, is kept fresh
    ({"config_drive": False}, True, True, True, True),
])
def test_required_by(extra: dict, force: bool, launched: bool, has_drive: bool, required: bool) -> None:
    decision = policy.required_by(_instance(**extra), force=force, launched=launched, has_drive=has_drive)
    assert decision.required is required and decision.reason


def test_force_setting_sources(tmp_path: Path) -> None:
    conf = tmp_path / "configdrive.toml"
    conf.write_text("[libvirt]\nforce_config_drive = true\n[api]\nworkers = 4\n")  # [api] is not ours
    env = "CONFIGDRIVE_LIBVIRT_FORCE_CONFIG_DRIVE"
    assert policy.force_setting(None, None, {}) is False
    assert policy.force_setting(None, conf, {}) is True
    assert policy.force_setting(None, None, {"CONFIGDRIVE_CONFIG": str(conf)}) is True
    assert policy.force_setting(None, conf, {env: "0"}) is False
    assert policy.force_setting(False, conf, {env: "1"}) is False
    assert policy.force_setting(True, None, {}) is True
    with pytest.raises(ConfigError, match="'maybe' is not true or false") as bad:
        policy.force_setting(None, None, {env: "maybe"})
    assert bad.value.exit_code == 2
    conf.write_text("libvirt = 1\n")
    with pytest.raises(ConfigError, match="must be a \\[section\\]"):
        policy.force_setting(None, conf, {})
    conf.write_text("[libvirt]\nforce_config_drives = true\n")
    with pytest.raises(ConfigError, match="unknown key 'force_config_drives' in \\[libvirt\\]"):
        policy.force_setting(None, conf, {})


# -- sync on the test driver --------------------------------------------------


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    c = open_connection("test:///default")
    made: list[str] = []
    c.made = made  # type: ignore[attr-defined]
    yield c
    for uuid in made:
        dom = c.lookupByUUIDString(uuid)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    c.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(data_dir=tmp_path / "store")
    yield s
    s.close()


def _domain(conn: Any, name: str, uuid: str | None = None) -> Any:
    uuid = uuid or str(uuidlib.uuid4())
    dom = conn.defineXML(f"<domain type='test'><name>{name}-{uuid[:8]}</name><uuid>{uuid}</uuid>"
                         f"<memory>65536</memory><os><type arch='x86_64' machine='q35'>hvm</type></os>"
                         f"<devices/></domain>")
    conn.made.append(uuid)
    return dom


def _register(store: Store, dom: Any, **extra: Any) -> None:
    data = {"uuid": dom.UUIDString(), "hostname": dom.name()[:20], **extra}
    store.add([(data, instance_from_data(data, "test"))])


def _has_drive(dom: Any) -> bool:
    return devices.find_drive(ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))) is not None


def test_sync_three_policies(conn: Any, store: Store, tmp_path: Path) -> None:
    images = attach.prepare_images_dir(tmp_path / "images")
    asks = _domain(conn, "asks")            # instance config_drive: true
    image = _domain(conn, "image")          # image says mandatory
    plain = _domain(conn, "plain")          # nothing: HTTP metadata
    stranger = _domain(conn, "stranger")    # not registered at all
    _register(store, asks, config_drive=True)
    _register(store, image, **MANDATORY)
    _register(store, plain, **OPTIONAL)
    untouched = stranger.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    plain_before = plain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    results = {r.uuid: r for r in sync(conn, store_lookup(store), force=False, images_dir=images)}
    assert results[asks.UUIDString()].status == "drive"
    assert results[image.UUIDString()].status == "drive"
    assert results[plain.UUIDString()].status == "http"
    assert results[stranger.UUIDString()].status == "ignored"
    assert [_has_drive(d) for d in (asks, image, plain, stranger)] == [True, True, False, False]
    assert plain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == plain_before
    assert stranger.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == untouched
    assert len(list(images.iterdir())) == 2

    # a second sync refreshes (still one drive each, one image each)
    again = {r.uuid: r for r in sync(conn, store_lookup(store), force=False, images_dir=images)}
    assert again[asks.UUIDString()].detail.startswith("refreshed")
    assert sum(len(attach.our_images(images, d.UUIDString())) for d in (asks, image)) == 2
    assert stranger.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == untouched


def test_sync_force_only_for_domains_not_running(conn: Any, store: Store, tmp_path: Path) -> None:
    images = attach.prepare_images_dir(tmp_path / "images")
    new = _domain(conn, "new")
    running = _domain(conn, "running")
    running.create()
    for dom in (new, running):
        _register(store, dom)
    dry = {r.uuid: r for r in sync(conn, store_lookup(store), force=True, images_dir=images, dry_run=True)}
    assert dry[new.UUIDString()].status == "drive" and not _has_drive(new)
    results = {r.uuid: r for r in sync(conn, store_lookup(store), force=True, images_dir=images)}
    assert results[new.UUIDString()].status == "drive" and _has_drive(new)
    assert results[running.UUIDString()].status == "http"
    assert "already running" in results[running.UUIDString()].detail
    assert not _has_drive(running)


def test_sync_reports_a_vanished_domain_and_goes_on(conn: Any, store: Store, tmp_path: Path) -> None:
    images = attach.prepare_images_dir(tmp_path / "images")
    gone, kept = _domain(conn, "gone"), _domain(conn, "kept")
    for dom in (gone, kept):
        _register(store, dom, config_drive=True)
    conn.made.remove(gone.UUIDString())
    gone.undefine()  # listed, then removed before sync reads it

    class Listing:
        def listAllDomains(self) -> list:
            return [gone, kept]

    results = {r.uuid: r for r in sync(Listing(), store_lookup(store), force=False, images_dir=images)}
    assert results[gone.UUIDString()].status == "failed", results
    assert results[gone.UUIDString()].detail.startswith("libvirt:")
    assert results[kept.UUIDString()].status == "drive" and _has_drive(kept)
