"""The YAML reader of the study file and of chapter parameters: PyYAML's safe loader, stricter.

- A key given twice in one mapping is an error (PyYAML keeps the last one silently).
- Numbers in exponent form without a dot or sign (`3e-3`, `1e5`) are floats, as in YAML 1.2; PyYAML
  follows YAML 1.1 and reads them as strings, which would pass a number check and fail in training.
  The float is the same as writing 0.003, so a run's config hash does not depend on the spelling.
"""
from __future__ import annotations

import re
from typing import Any

import yaml


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice."""


class StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # PyYAML's own error for unhashable keys comes below
        if key in seen:
            raise DuplicateKeyError(None, None, f"duplicate key {key!r} (first given on line {seen[key].start_mark.line + 1})",
                                    key_node.start_mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
# YAML 1.2 floats that YAML 1.1 misses: 3e-3, 1E5, 2.e-4 (PyYAML's own float rule covers the rest)
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load(stream: Any) -> Any:
    """Parse YAML text or a stream with the strict loader (raises yaml.YAMLError naming the line)."""
    return yaml.load(stream, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
