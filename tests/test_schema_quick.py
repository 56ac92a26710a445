"""The quick schema check may only ever say "valid" when jsonschema agrees."""
from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from metadata_content.spec.parse import parse_file
from metadata_content.spec.schema import _schema
from metadata_content.spec.schema_quick import certainly_valid

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.yaml"))
VALIDATOR = Draft202012Validator(_schema())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False),
                    st.text(max_size=300), st.sampled_from(["ssh", "x509", "pci", "nic", "layer2"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "mac", "cidr", "x"]), inner, max_size=3)),
    max_leaves=6)


def _paths(doc, prefix=()):
    """Every (container path, key or index) in doc."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield prefix, key
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield prefix, i
            yield from _paths(value, (*prefix, i))


def test_every_sample_takes_the_quick_path() -> None:
    for sample in SAMPLES:
        assert certainly_valid(_schema(), parse_file(sample)), sample


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_quick_valid_implies_jsonschema_valid(data: st.DataObject) -> None:
    doc = copy.deepcopy(parse_file(data.draw(st.sampled_from(SAMPLES))))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        if not paths:
            break
        where, key = data.draw(st.sampled_from(paths))
        parent = doc
        for step in where:
            parent = parent[step]
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["mtu", "vlan_id", "type", "links", "nmae", "bus"]))] = \
                data.draw(values)
        else:
            parent[key] = data.draw(values)
    if certainly_valid(_schema(), doc):
        assert not list(VALIDATOR.iter_errors(doc))
