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


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """Return a YAML error as one line: the problem, then the line and column where the parser found it.

    PyYAML's own text spans several lines, names the stream ("<unicode string>") and
    repeats the offending line with a caret under it.
    """
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem:
        return " ".join(str(exc).split())
    text = problem + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else "")
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        # Such as "while parsing a flow sequence", with where that sequence starts.
        where = f" (line {context_mark.line + 1}, column {context_mark.column + 1})" if context_mark is not None else ""
        text = f"{context}{where}: {text}"
    return text
