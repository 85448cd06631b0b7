"""docs/troubleshooting.md covers every error message that the package raises.

Each message is found in the source as the first argument of a ``VlmMicroError``
subclass (or the cause given to the readers' ``read_error``). Its longest fixed text
fragment, the part between placeholders, must appear verbatim in the page. Messages
made only of placeholders are skipped. A failure lists the file, line and fragment to
document.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .conftest import REPO_ROOT

DOC = REPO_ROOT / "docs" / "troubleshooting.md"
ERROR_TYPES = {"VlmMicroError", "ImageReadError", "ConfigError", "ModelLoadError", "AnnotationError", "OutputError"}
MIN_FRAGMENT = 12  # shorter fixed fragments are too generic to find a message by
FRAGMENT_STRIP = " ;:,.()'\"\n"


def literal_pieces(node: ast.AST) -> list[str]:
    """Return the fixed text pieces of a string expression, split at every placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        pieces, current = [], ""
        for value in node.values:
            if isinstance(value, ast.Constant):
                current += value.value
            else:
                pieces.append(current)
                current = ""
        return [*pieces, current]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal_pieces(node.left) + literal_pieces(node.right)
    return []


def key_fragment(node: ast.AST) -> str:
    pieces = [piece.strip(FRAGMENT_STRIP) for piece in literal_pieces(node)]
    return max(pieces, key=len, default="")


def call_name(node: ast.Call) -> str:
    """Return the called name: ``f`` for ``f(...)`` and ``obj.f(...)``, '' otherwise."""
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return ""


def error_messages() -> list[tuple[str, int, str]]:
    """Return (file, line, key fragment) for every error message raised in the package."""
    found = []
    for path in sorted((REPO_ROOT / "vlm_micro").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = call_name(node)
            if name in ERROR_TYPES and node.args:
                message = node.args[0]
            elif name == "read_error" and len(node.args) >= 2:
                message = node.args[1]
            else:
                continue
            fragment = key_fragment(message)
            if len(fragment) >= MIN_FRAGMENT:
                found.append((str(path.relative_to(REPO_ROOT)), node.lineno, fragment))
    return found


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_messages_found():
    assert len(error_messages()) > 100


def test_troubleshooting_covers_every_message():
    doc = normalized(DOC.read_text(encoding="utf-8"))
    missing = [f"{path}:{line}: {fragment}" for path, line, fragment in error_messages() if normalized(fragment) not in doc]
    assert missing == [], "document these messages in docs/troubleshooting.md:\n" + "\n".join(missing)
