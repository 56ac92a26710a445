"""Spec loading: the forms a spec may take, defaults, and YAML's traps."""
from __future__ import annotations

import base64
import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from metadata_content import MetadataTree, SpecError, load_instance
from metadata_content.spec import read_spec, yaml_loader

UUID = "dc7c8e7d-a420-45fd-bc9f-ae0a16177f73"


def write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_defaults(tmp_path):
    inst = load_instance(write(tmp_path, f"uuid: {UUID}\nhostname: h\n"))
    assert inst.fqdn == "h.novalocal" and inst.name == "h"
    assert inst.ec2_ids.instance_id == "i-dc7c8e7d"
    assert inst.availability_zone == "nova" and inst.reservation_id == "r-dc7c8e7d"
    md = json.loads(MetadataTree(inst).lookup("/openstack/latest/meta_data.json").body)
    assert "public_keys" not in md and "meta" not in md and md["devices"] == []


def test_empty_dhcp_domain_gives_a_bare_hostname(tmp_path):
    inst = load_instance(write(tmp_path, f"uuid: {UUID}\nhostname: h\ndhcp_domain: ''\n"))
    assert MetadataTree(inst).lookup("/latest/meta-data/hostname").body == b"h"


def test_user_data_forms(tmp_path):
    (tmp_path / "ud.sh").write_bytes(b"#!/bin/sh\n\xff binary ok\n")
    for form, expected in [
        ("user_data: hello", b"hello"),
        ("user_data: {text: hello}", b"hello"),
        ("user_data: {base64: aGVsbG8=}", b"hello"),
        ("user_data: {file: ud.sh}", b"#!/bin/sh\n\xff binary ok\n"),
    ]:
        inst = load_instance(write(tmp_path, f"uuid: {UUID}\nhostname: h\n{form}\n"))
        assert inst.user_data == expected, form


def test_read_spec_inlines_files_so_the_store_needs_no_directory(tmp_path):
    (tmp_path / "motd").write_text("hi\n")
    (tmp_path / "k.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpLnqtlLpQehMSV8X8CH+gml0Nmc9dH5Q/2haAxA8eB a\n")
    data = read_spec(write(tmp_path, f"uuid: {UUID}\nhostname: h\nfiles: [{{path: /etc/motd, file: motd}}]\n"
                                     "keys: [{name: a, file: k.pub}]\n"))
    assert data["files"] == [{"path": "/etc/motd", "content_base64": base64.b64encode(b"hi\n").decode()}]
    assert data["keys"][0]["data"].startswith("ssh-ed25519 ")
    json.dumps(data)  # storable as JSON


def test_yaml_traps_are_disarmed(tmp_path):
    inst = load_instance(write(tmp_path, f"uuid: {UUID}\nhostname: h\nmeta: {{answer: no, mode: '0755'}}\n"
                                         "nics: [{mac: 52:54:00:12:34:56}]\n"))
    assert inst.meta == {"answer": "no", "mode": "0755"}
    assert inst.nics[0].mac == "52:54:00:12:34:56"


def test_json_spec(tmp_path):
    inst = load_instance(write(tmp_path, json.dumps({"uuid": UUID, "hostname": "j"}), "spec.json"))
    assert inst.hostname == "j"


def test_literal_network_data_is_passed_through(tmp_path):
    doc = {"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01", "mtu": 1500}],
           "networks": [{"id": "n0", "type": "ipv4", "link": "eth0", "ip_address": "10.0.0.2",
                         "netmask": "255.255.255.0", "network_id": "b1a76d32-32c2-42c2-9aee-e226ccf7eec3"}],
           "services": []}
    inst = load_instance(write(tmp_path, json.dumps({"uuid": UUID, "hostname": "h", "network_data": doc}), "s.json"))
    tree = MetadataTree(inst)
    assert json.loads(tree.lookup("/openstack/latest/network_data.json").body) == doc
    assert tree.lookup("/latest/meta-data/local-ipv4").body == b"10.0.0.2"
    assert [(p.network_id, p.ip, p.mac) for p in inst.ports()] == [
        ("b1a76d32-32c2-42c2-9aee-e226ccf7eec3", "10.0.0.2", "fa:16:3e:00:00:01")]


def test_ec2_ids_from_numbers_or_given(tmp_path):
    inst = load_instance(write(tmp_path, f"uuid: {UUID}\nhostname: h\nec2_instance_id: 255\n"
                                         "image: {ec2_id: ami-0123456789abcdef0}\nkernel: {ec2_id: 1}\n"))
    assert inst.ec2_ids.instance_id == "i-000000ff"
    assert inst.ec2_ids.ami_id == "ami-0123456789abcdef0"
    assert inst.ec2_ids.kernel_id == "aki-00000001" and inst.ec2_ids.ramdisk_id is None
    tree = MetadataTree(inst)
    assert tree.lookup("/latest/meta-data/ramdisk-id").status == 404  # unknown: omitted, not "None"
    assert b"ramdisk-id" not in tree.lookup("/latest/meta-data").body


# -- the YAML loader: only what JSON can hold ----------------------------------

def _both_paths(text):
    """yaml_loader.load's result and PyYAML's constructor's, or the type of error each raised."""
    out = []
    for load in (yaml_loader.load, lambda t: yaml.load(t, Loader=yaml_loader.SpecLoader)):
        try:
            out.append(load(text))
        except (yaml_loader.SpecYAMLError, yaml.YAMLError, RecursionError) as exc:
            out.append(type(exc))
    return out


def _left_to_pyyaml(text):
    """True when the event builder hands *text* to PyYAML's composer and constructor."""
    try:
        yaml_loader._load_plain(text)
    except (yaml_loader._Unsupported, yaml.YAMLError):
        return True
    return False


def test_aliases_share_a_value_in_both_loader_paths():
    text = "a: &x {b: [1, two]}\nc: *x\nd: &l [1]\ne: [*l, *l]\n"
    assert _left_to_pyyaml(text)
    fast, pyyaml = _both_paths(text)
    assert fast == pyyaml == {"a": {"b": [1, "two"]}, "c": {"b": [1, "two"]}, "d": [1], "e": [[1], [1]]}
    assert fast["a"] is fast["c"]


def test_a_value_containing_itself_is_refused_by_both_paths():
    for text in ("vendor_data: &v\n  self: *v\n", "vendor_data: {l: &l [*l]}\n", "a: &l [{b: *l}]\n"):
        assert _left_to_pyyaml(text) and _both_paths(text) == [yaml_loader.SpecYAMLError] * 2, text


def test_only_json_tags_are_constructed():
    json_tags = {f"tag:yaml.org,2002:{t}" for t in ("str", "seq", "map", "int", "float", "bool", "null")}
    assert set(yaml_loader.SpecLoader.yaml_constructors) == json_tags | {None}
    assert _both_paths("a: !!str 1\nb: !!float 2\nc: !!int 3\nd: !!bool true\ne: !!null ''\n") == [
        {"a": "1", "b": 2.0, "c": 3, "d": True, "e": None}] * 2
    for text in ("a: !!timestamp 2020-01-01", "a: !!binary aGk=", "a: !!set {x}", "a: !!omap [x: 1]",
                 "a: !!pairs [x: 1]", "a: !!python/name:os.system", "a: !foo x", "!!merge <<: {a: 1}",
                 "a: !!int 0x10", "a: !!float abc", "a: !!bool maybe"):
        assert _left_to_pyyaml(text) and _both_paths(text) == [yaml_loader.SpecYAMLError] * 2, text


@pytest.mark.parametrize("levels", [2, 50, 99, 100])
@pytest.mark.parametrize("open_, close", [("[", "]"), ("{a: ", "}")])
def test_documents_up_to_the_limit_get_pyyaml_s_value(levels, open_, close):
    """The top mapping is the first of the 100 levels a document may have."""
    text = "v: " + open_ * (levels - 1) + "1" + close * (levels - 1) + "\n"
    fast, pyyaml = _both_paths(text)
    assert fast == pyyaml and isinstance(fast, dict), levels


@pytest.mark.parametrize("levels", [101, 150, 999, 1001, 3000, 100_000])
@pytest.mark.parametrize("style", ["flow", "flow with an anchor", "block"])
def test_deeper_documents_get_our_error_with_the_line(levels, style):
    """Our limit, at the line and column of the 101st level, before PyYAML's
    recursion or libyaml's own nesting limit can answer in their words."""
    if style == "block":
        if levels > 1001:
            return  # megabytes of indentation; 1001 is already past libyaml's limit
        # n: 1 / v: / then one "a:" per level, each two spaces deeper
        text = "n: 1\nv:\n" + "".join("  " * i + "a:\n" for i in range(1, levels - 1)) + "  " * (levels - 1) + "a: 1\n"
        line, column = 102, 201  # the 100th "a:", the mapping that is level 101
    else:
        anchor = "&x " if style == "flow with an anchor" else ""
        text = "n: 1\nv: " + anchor + "[" * (levels - 1) + "]" * (levels - 1) + "\n"
        line, column = 2, 3 + len(anchor) + 100  # the 100th bracket
    with pytest.raises(yaml_loader.SpecYAMLError) as err:
        yaml_loader.load(text)
    assert str(err.value) == (f"nested too deeply (more than 100 levels of lists and mappings) "
                              f"(line {line}, column {column})")


def test_non_json_values_are_a_clear_spec_error(tmp_path):
    cases = {"vendor_data: {t: !!timestamp 2020-01-01}": "tag '!!timestamp' is not supported: a spec holds "
             "only strings, numbers, true/false, null, lists and mappings (line 3, column 18)",
             "vendor_data: {t: !!binary aGk=}": "tag '!!binary' is not supported",
             "vendor_data: {l: &l [*l]}": "an alias makes this value contain itself (line 3, column 18)",
             "? [1]\n: x": "found a list or mapping as a key (keys are strings) (line 3, column 3)",
             "vendor_data: {1: a, '1': b}": "found key '1', which is not a string (quote it) (line 3, column 15)",
             "meta: {~: x}": "found key '~', which is not a string",
             "true: x": "found key 'true', which is not a string",
             "vendor_data: *nope": "alias *nope has no anchor &nope before it (line 3, column 14)",
             "---\nx: 1\n---\ny: 2": "a second document starts here: a spec is one document (line 3, column 1)",
             "vendor_data: {a: 1": "unexpected text here (check the indentation, the ':' after each key, "
             "and that every bracket and quote is closed) (line 4, column 1)",
             "vendor_data: 'open": "not valid YAML syntax here (an unclosed quote or bracket, a stray "
             "character, or a ':' or '-' without a space after it) (line 4, column 1)",
             "vendor_data:\n\tx: 1": "a tab character here (YAML indents with spaces only) (line 4, column 1)",
             "vendor_data: \x07": "character U+0007 is not allowed in YAML (line 3)",
             "vendor_data: " + "[" * 3000 + "]" * 3000: "nested too deeply (more than 100 levels of lists "
             "and mappings) (line 3, column 113)"}
    for text, message in cases.items():
        with pytest.raises(SpecError) as err:
            load_instance(write(tmp_path, f"uuid: {UUID}\nhostname: h\n{text}\n"))
        [problem] = err.value.problems
        assert problem.path == "" and problem.message.startswith(f"invalid YAML: {message}"), (text, problem)


@pytest.mark.parametrize("depth", [100, 101, 2000, 100_000])
def test_deep_json_is_a_clear_spec_error(tmp_path, depth):
    """The same limit as YAML's: a JSON spec 100 levels deep loads, one level more does not."""
    deep = "[" * (depth - 2) + "]" * (depth - 2)  # vendor_data and "d" are two levels
    text = f'{{"uuid": "{UUID}",\n"hostname": "h",\n"vendor_data": {{"d": {deep}}}}}'
    spec = write(tmp_path, text, "deep.json")
    if depth <= 100:
        load_instance(spec)
        return
    with pytest.raises(SpecError) as err:
        load_instance(spec)
    assert err.value.problems[0].message == (
        "invalid JSON: nested too deeply (more than 100 levels of arrays and objects) (line 3)")


def test_json_syntax_errors_name_the_line(tmp_path):
    spec = write(tmp_path, f'{{"uuid": "{UUID}",\n "hostname": "h",,\n}}', "bad.json")
    with pytest.raises(SpecError) as err:
        load_instance(spec)
    message = err.value.problems[0].message
    assert message.startswith("invalid JSON: ") and message.endswith("(line 2, column 18)")


def test_keys_that_are_not_strings_are_refused_with_their_line(tmp_path):
    """JSON keys are strings: ``1:`` and ``"1":`` would be one name written twice."""
    for key in ("1", "null", "1.5", "false"):
        with pytest.raises(SpecError) as err:
            load_instance(write(tmp_path, f"uuid: {UUID}\nhostname: h\nvendor_data:\n  {key}: x\n"))
        [problem] = err.value.problems
        assert problem.message == (f"invalid YAML: found key {key!r}, which is not a string "
                                   "(quote it) (line 4, column 3)")
    # a JSON spec's keys are strings already, and a quoted YAML key is one
    spec = write(tmp_path, f'uuid: {UUID}\nhostname: h\nvendor_data: {{"1": a, "2": b}}\n')
    assert MetadataTree(load_instance(spec)).lookup("/openstack/latest/vendor_data.json").body == \
        b'{"1": "a", "2": "b"}'


def test_json_spec_without_infinity_or_nan(tmp_path):
    """json.loads takes Infinity and NaN; the drive's JSON could not hold them."""
    for constant in ("Infinity", "-Infinity", "NaN"):
        spec = write(tmp_path, f'{{"uuid": "{UUID}", "hostname": "j", "vendor_data": {{"x": {constant}}}}}',
                     "spec.json")
        with pytest.raises(SpecError, match=f"invalid JSON: {constant} is not a JSON number"):
            load_instance(spec)


_words = st.sampled_from(["no", "yes", "on", "off", "~", "null", "True", "FALSE", "0755", "0x10",
                          "1e3", "1.5", ".5", "-0", "+1", "52:54:00:12:34:56", "1:20", "2020-01-01",
                          "<<", "", " ", "a: b", "- x", "#", "!x", "&a", "*a", "é"])
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=8) | _words
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(_scalars.filter(lambda k: not isinstance(k, float)), inner, max_size=4),
                       max_leaves=20)


@given(value=_values, flow=st.sampled_from([None, True, False]))
@settings(max_examples=300, deadline=None)
def test_the_event_builder_agrees_with_pyyaml(value, flow) -> None:
    """Plain documents are built from parse events; the result (or the error) must be PyYAML's."""
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True)
    fast, pyyaml = _both_paths(text)
    assert fast == pyyaml and type(fast) is type(pyyaml), text


@pytest.mark.parametrize("text", ["a: 1.0e999\nb: [", "a: 1.0e999\n", "a: 1\na: 2\nb: [", "[1, 2", "a: b\n---\nc: d\n",
                                  "a: !!int x\n", "? [1]\n: x\n", "a: *nope\n", "a: [b\n", "a: &x 1\nb: [\n"])
def test_bad_documents_give_our_error(text) -> None:
    """Every YAML problem is a SpecYAMLError with a line, worded here, never a parser's error."""
    with pytest.raises(yaml_loader.SpecYAMLError) as caught:
        yaml_loader.load(text)
    assert caught.value.line is not None and "\n" not in str(caught.value)


def test_aliases_cannot_expand_a_small_text_into_a_huge_value(tmp_path):
    """Nine levels of ten aliases each would be 10^9 values for the checks, the renderer and
    the store: refused while scanning, with the line, before anything is built."""
    levels = ["v0: &v0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"v{i}: &v{i} [{', '.join([f'*v{i - 1}'] * 10)}]" for i in range(1, 9)]
    spec = write(tmp_path, f"uuid: {UUID}\nhostname: h\nvendor_data:\n" + "".join(f"  {line}\n" for line in levels))
    with pytest.raises(SpecError) as err:
        load_instance(spec)
    assert err.value.problems[0].message == (
        "invalid YAML: aliases expand this document to more than 100,000 values (line 8, column 57)")
    small = write(tmp_path, f"uuid: {UUID}\nhostname: h\nvendor_data: {{a: &a [1, 2], b: *a, c: *a}}\n")
    assert read_spec(small)["vendor_data"] == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}


@pytest.mark.parametrize("value,message", [
    ('{"x": 1e999}', "invalid JSON: 1e999 is not a finite number"),
    ('{"x": 1, "x": 2}', "invalid JSON: duplicate key 'x'"),
    ('{"x": ' + "9" * 5000 + "}", "invalid JSON: a number of 5000 digits is too long")])
def test_json_values_a_guest_could_not_read(tmp_path, value, message):
    """What JSON's parser would take but a drive's JSON cannot hold (or would keep silently)."""
    spec = write(tmp_path, f'{{"uuid": "{UUID}", "hostname": "h", "vendor_data": {value}}}', "spec.json")
    with pytest.raises(SpecError) as err:
        load_instance(spec)
    assert err.value.problems[0].message == message
