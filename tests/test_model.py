"""The model's immutable value base: construction, defaults, errors, equality."""
from __future__ import annotations

import pytest

from metadata_content.model import FrozenError, Keypair, _Value, fresh, replace


class Sample(_Value):
    name: str
    count: int = 0
    tags: dict = fresh(dict)


def test_positional_keyword_and_defaults() -> None:
    a = Sample("x", 2, {"k": "v"})
    b = Sample(name="x", count=2, tags={"k": "v"})
    assert a == b
    assert hash(Sample("x", 2, ())) == hash(Sample(name="x", count=2, tags=()))
    c = Sample("y")
    assert (c.name, c.count, c.tags) == ("y", 0, {})
    assert Sample("z").tags is not c.tags  # fresh(dict): a new dict per value
    assert repr(a) == "Sample(name='x', count=2, tags={'k': 'v'})"
    assert a != Sample("x", 3) and a != ("x", 2, {"k": "v"})


@pytest.mark.parametrize("make,message", [
    (lambda: Sample(), "missing required argument 'name'"),
    (lambda: Sample("x", nope=1), "unexpected keyword argument 'nope'"),
    (lambda: Sample("x", name="y"), "multiple values for argument 'name'"),
    (lambda: Sample("x", 1, {}, 4), "takes 3 arguments, got 4"),
])
def test_bad_construction_is_a_type_error(make, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


def test_values_are_frozen_and_replace_copies() -> None:
    key = Keypair("alice", "ssh-ed25519 AAAA")
    with pytest.raises(FrozenError):
        key.name = "bob"  # type: ignore[misc]
    with pytest.raises(FrozenError):
        del key.data
    other = replace(key, name="bob")
    assert (other.name, other.data, other.type, key.name) == ("bob", "ssh-ed25519 AAAA", "ssh", "alice")
