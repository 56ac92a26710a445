"""A safe YAML loader without YAML 1.1's traps for instance specs.

PyYAML follows YAML 1.1, where ``52:54:00:12:34:56`` (a MAC) is a base-60
integer, ``no`` is False and ``0755`` is octal. Specs are full of MACs and
short words, so this loader keeps only JSON-like scalars (true/false, null,
decimal ints and floats) and refuses duplicate keys instead of silently
keeping the last one.
"""
from __future__ import annotations

import re
from typing import Any

import yaml


# libyaml's parser when present (PyYAML's pure-Python scanner costs ~15 ms on a
# rich spec); resolution and construction stay in Python, so behaviour is equal.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecLoader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate-key errors."""


# Start from no implicit resolvers, then add the YAML 1.2 core ones we want.
SpecLoader.yaml_implicit_resolvers = {}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"), list("-+0123456789."))


def _int_decimal(loader: SpecLoader, node: yaml.ScalarNode) -> int:
    return int(loader.construct_scalar(node))  # decimal only: 0755 stays 755, never octal


def _mapping_no_duplicates(loader: SpecLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen[key] = 1
    return loader.construct_mapping(node, deep=deep)


SpecLoader.add_constructor("tag:yaml.org,2002:int", _int_decimal)
SpecLoader.add_constructor("tag:yaml.org,2002:map", _mapping_no_duplicates)
