"""YAML reading shared by the config and vocabulary loaders."""

from __future__ import annotations

import yaml


class UniqueKeySafeLoader(yaml.SafeLoader):
    """The safe YAML loader, except that a key given twice in one mapping is an error.

    The safe loader keeps the last value of a repeated key, so a setting written twice
    in a config or labels file would silently lose its first value.
    """

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping; keep one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
