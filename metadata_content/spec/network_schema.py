"""Validate a network_data.json document against the published format.

Two layers, because JSON Schema cannot follow references between objects:

1. ``schemas/network_data.schema.json`` (draft 2020-12, formats checked):
   shapes, enums, per-type required keys, address families.
2. Cross-references checked here: unique link and network ids, every
   ``networks[].link``, ``bond_links[]`` and ``vlan_link`` naming an existing
   link (cloud-init 22.4.2 raises KeyError otherwise), and contiguous netmasks
   (a format check cannot tell ``255.0.255.0`` from a mask).

Problems come back as ``(path, reason)`` with paths like
``links[0].bond_links[1]``, so a test or a spec error can point at the field.
"""
from __future__ import annotations

import ipaddress
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from metadata_content.errors import json_path
from metadata_content.schemas import load_schema
from metadata_content.spec.schema_words import reason

__all__ = ["network_data_schema", "validate_network_data"]

Problem = tuple[str, str]


def network_data_schema() -> dict[str, Any]:
    """The schema, read from the installed package (works from a wheel or a zip)."""
    return load_schema("network_data.schema.json")


@cache
def _validator() -> Draft202012Validator:
    schema = network_data_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _schema_problems(doc: Any) -> list[Problem]:
    problems: list[Problem] = []
    for error in _validator().iter_errors(doc):
        parts = list(error.absolute_path)
        if error.validator == "required":
            # Point at each missing key, not at its parent (repeats are dropped later).
            present = error.instance if isinstance(error.instance, dict) else {}
            problems.extend((json_path([*parts, k]), "required property is missing")
                            for k in error.validator_value if k not in present)
        else:
            problems.append((json_path(parts), reason(error)))
    return problems


def _contiguous(mask: str) -> bool | None:
    """True/False for a valid address; None when it is no address (the schema reports that)."""
    try:
        addr = ipaddress.ip_address(mask)
    except ValueError:
        return None
    inverted = ~int(addr) & ((1 << addr.max_prefixlen) - 1)
    return inverted & (inverted + 1) == 0


def _index_ids(items: list[Any], where: str, problems: list[Problem]) -> dict[str, int]:
    """{id: first index}; every repeated id is a problem (cloud-init keys its lookups by id)."""
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        item_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(item_id, str):
            if item_id in first:
                problems.append((f"{where}[{i}].id", f"duplicate id {item_id!r} (first at {where}[{first[item_id]}])"))
            else:
                first[item_id] = i
    return first


def _reference_problems(doc: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    raw_links, raw_networks = doc.get("links", []), doc.get("networks", [])
    links: list[Any] = raw_links if isinstance(raw_links, list) else []
    networks: list[Any] = raw_networks if isinstance(raw_networks, list) else []
    link_ids = _index_ids(links, "links", problems)
    _index_ids(networks, "networks", problems)

    # A link without a usable id (already reported by the schema) could be any
    # target, so dangling references are only reported when every id is known.
    ids_complete = isinstance(raw_links, list) and all(
        isinstance(link, dict) and isinstance(link.get("id"), str) for link in links)

    def check_ref(path: str, target: Any, own_id: Any = None) -> None:
        if not isinstance(target, str) or not ids_complete:
            return
        if target == own_id:
            problems.append((path, f"link {target!r} refers to itself"))
        elif target not in link_ids:
            problems.append((path, f"no link has id {target!r}"))

    for i, link in enumerate(links):
        if not isinstance(link, dict):
            continue
        if link.get("type") == "bond" and isinstance(link.get("bond_links"), list):
            for j, member in enumerate(link["bond_links"]):
                check_ref(f"links[{i}].bond_links[{j}]", member, link.get("id"))
        if link.get("type") == "vlan":
            check_ref(f"links[{i}].vlan_link", link.get("vlan_link"), link.get("id"))

    for i, net in enumerate(networks):
        if not isinstance(net, dict):
            continue
        check_ref(f"networks[{i}].link", net.get("link"))
        masks = [(f"networks[{i}].netmask", net.get("netmask"))]
        if isinstance(net.get("routes"), list):
            masks += [(f"networks[{i}].routes[{j}].netmask", r.get("netmask"))
                      for j, r in enumerate(net["routes"]) if isinstance(r, dict)]
        for path, mask in masks:
            if isinstance(mask, str) and _contiguous(mask) is False:
                problems.append((path, f"{mask!r} is not a contiguous netmask"))
    return problems


def validate_network_data(doc: Any) -> list[Problem]:
    """Every problem with ``doc`` as a network_data.json; empty when it is valid.

    Schema problems come first; reference checks run only on a document whose
    top level is an object, and skip values the schema already rejected.
    """
    problems = _schema_problems(doc)
    if isinstance(doc, dict):
        problems += _reference_problems(doc)
    return list(dict.fromkeys(problems))
