"""Static checks of the source: safe loaders, no shell strings, escaped HTML.

These scan the package and the workflow with ``ast`` and regular expressions, so a
new unsafe call fails the suite before any behavioural test would notice it:

- model weights load through safetensors or ``torch.load(weights_only=True)``, and
  every open_clip factory call passes ``weights_only=True``;
- YAML loads with the safe loader only, and nothing unpickles;
- no shell runs: no ``shell=True``, ``os.system`` or ``os.popen``, no command given as
  one string, and a Snakemake ``shell:`` directive quotes every file name with ``:q``;
- HTML built in f-strings escapes every interpolated value that is not a number, a
  constant or HTML built by an escaping helper;
- files are written to the temporary path that ``vlm_micro.atomic`` yields (or to an
  in-memory buffer), never straight to their final name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "vlm_micro"
WORKFLOW = REPO_ROOT / "workflow"
SOURCES = sorted(PACKAGE.rglob("*.py"))
WORKFLOW_FILES = sorted([WORKFLOW / "Snakefile", *WORKFLOW.rglob("*.smk")])

OPEN_CLIP_LOADERS = {"create_model", "create_model_and_transforms", "create_model_from_pretrained", "load_checkpoint"}
UNSAFE_YAML = {"unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"}
UNSAFE_YAML_LOADERS = {"Loader", "UnsafeLoader", "FullLoader"}
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
HTML_TAG = re.compile(r"<[a-zA-Z/!]")
# Functions whose result is escaped HTML, a number or fixed text.
HTML_SAFE_CALLS = {"esc", "href", "escape", "fmt_number", "fmt_percent", "swatch", "img_tag", "kv_table",
                   "data_table", "template_text", "join", "int", "len", "round", "max", "min", "float"}
# Interpolations that are plain integers, checked by reading the code.
HTML_SAFE_EXPRESSIONS = {"ctx.n_planes"}
# Calls that write a file named by their first argument.
WRITE_CALLS = {"to_parquet", "to_csv", "savefig", "imwrite", "save", "savez", "savez_compressed",
               "write_text", "write_bytes", "save_file"}
# First arguments that are not a final output: atomic temporary paths, open handles, buffers.
WRITE_TARGETS = {"tmp", "str(tmp)", "handle", "buffer", "sys.stdout"}
# Writes checked by reading the code: the probe file of the results-folder check, a
# figure added to a PdfPages that writes to a temporary path, and a helper whose only
# caller passes a temporary path.
WRITE_EXCEPTIONS = {
    ("vlm_micro/pipeline/run.py", "probe.write_bytes"),
    ("vlm_micro/reporting/pdf_report.py", "fig.savefig"),
    ("vlm_micro/evaluation/report.py", "path.savefig"),
}


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def call_name(node: ast.Call) -> tuple[str, str]:
    """Return (owner, name) of a call: ("torch", "load") for torch.load(...), ("", "f") for f(...)."""
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else ast.unparse(func.value)
        return owner, func.attr
    if isinstance(func, ast.Name):
        return "", func.id
    return "", ""


def keyword_value(node: ast.Call, name: str):
    for keyword in node.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def is_true(value) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


def shown(path: Path) -> Path:
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def where(path: Path, node: ast.AST) -> str:
    return f"{shown(path)}:{node.lineno}: {ast.unparse(node)[:120]}"


def test_sources_found():
    assert len(SOURCES) > 50
    assert (WORKFLOW / "Snakefile") in WORKFLOW_FILES


def calls_without_weights_only(selects) -> tuple[int, list[str]]:
    """Count the calls for which ``selects(owner, name)`` is true; list those without ``weights_only=True``."""
    problems, seen = [], 0
    for path in SOURCES:
        for node in calls(parsed(path)):
            if selects(*call_name(node)):
                seen += 1
                if not is_true(keyword_value(node, "weights_only")):
                    problems.append(where(path, node))
    return seen, problems


def test_torch_load_weights_only():
    seen, problems = calls_without_weights_only(lambda owner, name: owner == "torch" and name == "load")
    assert seen >= 1, "no torch.load call found: the scan is looking in the wrong place"
    assert problems == []


def test_open_clip_loaders_weights_only():
    seen, problems = calls_without_weights_only(lambda owner, name: owner == "open_clip" and name in OPEN_CLIP_LOADERS)
    assert seen >= 1, "no open_clip model factory call found: the scan is looking in the wrong place"
    assert problems == []


def test_no_unpickling():
    problems = []
    for path in SOURCES:
        for node in calls(parsed(path)):
            owner, name = call_name(node)
            if owner in ("pickle", "dill", "joblib", "cloudpickle") and name in ("load", "loads"):
                problems.append(where(path, node))
            if is_true(keyword_value(node, "allow_pickle")):
                problems.append(where(path, node))
    assert problems == []


def test_yaml_safe_loader_only():
    problems = []
    for path in SOURCES:
        tree = parsed(path)
        for node in calls(tree):
            owner, name = call_name(node)
            if owner == "yaml" and name in UNSAFE_YAML:
                problems.append(where(path, node))
            if owner == "yaml" and name == "load":
                loader = keyword_value(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
                if loader is None or "Safe" not in ast.unparse(loader):
                    problems.append(where(path, node))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml" \
                    and node.attr in UNSAFE_YAML_LOADERS:
                problems.append(where(path, node))
    assert problems == []


def _command_is_string(node: ast.Call) -> bool:
    command = node.args[0] if node.args else keyword_value(node, "args")
    return isinstance(command, (ast.JoinedStr, ast.BinOp)) or (isinstance(command, ast.Constant) and isinstance(command.value, str))


def test_no_shell_commands():
    problems = []
    for path in SOURCES:
        for node in calls(parsed(path)):
            owner, name = call_name(node)
            if is_true(keyword_value(node, "shell")):
                problems.append(where(path, node))
            if (owner, name) in (("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")):
                problems.append(where(path, node))
            if owner == "subprocess" and name in SUBPROCESS_CALLS and _command_is_string(node):
                problems.append(where(path, node))
    assert problems == []


def test_no_eval_or_exec():
    problems = []
    for path in SOURCES:
        for node in calls(parsed(path)):
            if call_name(node) in (("", "eval"), ("", "exec")):
                problems.append(where(path, node))
    assert problems == []


def shell_directives(text: str) -> list[str]:
    """Return the bodies of Snakemake ``shell:`` directives (the indented block after the keyword)."""
    bodies = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)shell:\s*(.*)$", line)
        if not match:
            continue
        indent, body = len(match.group(1)), [match.group(2)]
        for following in lines[index + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        bodies.append("\n".join(body))
    return bodies


def unquoted_placeholders(shell_body: str) -> list[str]:
    """Return the ``{input}``-style placeholders of a shell command that lack the ``:q`` quoting."""
    placeholders = re.findall(r"(?<!\{)\{(input|output|params|wildcards|log|resources)([^{}]*)\}(?!\})", shell_body)
    return [f"{{{kind}{rest}}}" for kind, rest in placeholders if not rest.endswith(":q")]


def test_snakemake_shell_quotes_file_names():
    problems = []
    for path in WORKFLOW_FILES:
        for body in shell_directives(path.read_text(encoding="utf-8")):
            problems += [f"{path.relative_to(REPO_ROOT)}: {item}" for item in unquoted_placeholders(body)]
    assert problems == []


@pytest.mark.parametrize("body, expected", [
    ('"cp {input} {output:q}"', ["{input}"]),
    ('"tool --in {input.image:q} --log {log:q} {wildcards.sample}"', ["{wildcards.sample}"]),
    ('"echo {{literal}} {params.x:q}"', []),
])
def test_shell_placeholder_scanner(body, expected):
    assert unquoted_placeholders(body) == expected


def unescaped_html_values(path: Path) -> list[str]:
    """Return f-string interpolations in HTML text that are not escaped, numbers or known HTML."""
    problems = []
    for node in ast.walk(parsed(path)):
        if not isinstance(node, ast.JoinedStr):
            continue
        literal = "".join(value.value for value in node.values if isinstance(value, ast.Constant))
        if not HTML_TAG.search(literal):
            continue
        for value in node.values:
            if isinstance(value, ast.FormattedValue) and not _html_safe(value):
                problems.append(f"{shown(path)}:{node.lineno}: {{{ast.unparse(value.value)}}}")
    return problems


def _html_safe(value: ast.FormattedValue) -> bool:
    if value.format_spec is not None:  # a number format such as {count:,} or {size:g}
        return True
    return _safe_expression(value.value)


def _safe_expression(expression: ast.expr) -> bool:
    if isinstance(expression, ast.Constant):
        return True
    if isinstance(expression, ast.Name):  # a local variable with HTML built in this module
        return True
    if isinstance(expression, ast.IfExp):
        return _safe_expression(expression.body) and _safe_expression(expression.orelse)
    if isinstance(expression, ast.BoolOp):
        return all(_safe_expression(item) for item in expression.values)
    if isinstance(expression, ast.Call):
        _, name = call_name(expression)
        return name in HTML_SAFE_CALLS or name.startswith("_")
    return ast.unparse(expression) in HTML_SAFE_EXPRESSIONS


def test_html_values_escaped():
    problems = []
    for path in SOURCES:
        problems += unescaped_html_values(path)
    assert problems == []


def test_html_scanner_flags_raw_value(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('row = {}\nhtml = f"<td>{row[\'path\']}</td><td>{esc(row[\'error\'])}</td>"\n', encoding="utf-8")
    assert unescaped_html_values(sample) == [f"{sample}:2: {{row['path']}}"]


def write_target(node: ast.Call) -> str | None:
    """Return the path expression that a file-writing call writes to, or None for other calls."""
    owner, name = call_name(node)
    if name == "open" and owner == "":
        mode = node.args[1] if len(node.args) >= 2 else keyword_value(node, "mode")
        if isinstance(mode, ast.Constant) and any(flag in str(mode.value) for flag in "wax"):
            return ast.unparse(node.args[0])
        return None
    if name in ("write_text", "write_bytes"):
        # Path.write_text writes to its owner. A bare write_text(...) is vlm_micro.atomic's.
        return ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else None
    if (owner, name) in (("torch", "save"), ("", "save_file")):
        return ast.unparse(node.args[1]) if len(node.args) >= 2 else None
    if name in WRITE_CALLS and node.args:
        return ast.unparse(node.args[0])
    return None


def direct_writes(path: Path) -> list[str]:
    """Return the calls in ``path`` that write a file other than an atomic temporary one."""
    problems = []
    for node in calls(parsed(path)):
        target = write_target(node)
        if target is None or target in WRITE_TARGETS:
            continue
        if (str(shown(path)), f"{target}.{call_name(node)[1]}") in WRITE_EXCEPTIONS:
            continue
        problems.append(where(path, node))
    return problems


def test_outputs_written_atomically():
    problems = []
    for path in SOURCES:
        if path.name == "atomic.py":
            continue
        problems += direct_writes(path)
    assert problems == []


def test_write_scanner_flags_direct_write(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("table.to_parquet(out / 'tiles.parquet')\nwith atomic_path(p) as tmp:\n    table.to_parquet(tmp)\n",
                      encoding="utf-8")
    assert direct_writes(sample) == [f"{sample}:1: table.to_parquet(out / 'tiles.parquet')"]
