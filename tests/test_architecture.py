"""Rules of the code's shape, checked by reading the source (see docs/architecture.md).

1. ``core`` is plumbing: it imports no app (accounts, orchestration, billing, frontend), not even
   inside a function. Code that needs a Principal or a flow lives in that app, and core offers a
   hook when it must call up.
2. Only the engine (``orchestration/engine/``) writes the state of a flow run or a task run: the
   ``state_*`` columns and the state history rows. Everything else asks the engine, so the locking,
   the stale-version check, the history row and the event are written once.
3. Comments and docstrings cite only what a maintainer can look up in the repo: reliability codes
   ("the database clock (D6)") that ``docs/reliability.md`` defines, and documents that exist.

Both are plain AST walks (no import of the code under test), so a lazy import or a write hidden in
a rarely run branch is caught as well as one at the top of a module.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

from django.apps import apps

from orchestration.models import FlowRun, FlowRunState, TaskRun, TaskRunState

ROOT = Path(__file__).resolve().parent.parent
SERVER_PACKAGES = ("config", "core", "accounts", "orchestration", "billing", "frontend")
# Every Django app of the project except core itself (a package with an apps.py).
APPS = sorted(path.parent.name for path in ROOT.glob("*/apps.py") if path.parent.name != "core")
ENGINE = ROOT / "orchestration" / "engine"


SKIPPED_DIRS = frozenset({"migrations", "node_modules", ".venv", "__pycache__"})


def _python_files(*packages: str) -> Iterator[Path]:
    """The Python files of ``packages``, migrations and the web app's JavaScript tree left out."""
    for package in packages:
        for folder, dirs, files in os.walk(ROOT / package):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and here / d != ROOT / "frontend" / "app")
            yield from (here / name for name in sorted(files) if name.endswith(".py"))


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


def _callee(call: ast.Call) -> str:
    """The called name: ``update`` for ``runs.filter(...).update(...)``, ``FlowRun`` for ``FlowRun(...)``."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _strings(node: ast.AST) -> Iterator[str]:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            yield inner.value


# --- 1. core imports no app ----------------------------------------------------------------------

# Calls that import a module named by a string.
DYNAMIC_IMPORTS = {"import_module", "import_string", "__import__"}


def _imported_modules(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    """Every module a file imports, wherever the import statement is (function bodies included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module
        elif isinstance(node, ast.Call) and _callee(node) in DYNAMIC_IMPORTS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node, first.value


def core_imports_of_apps() -> list[str]:
    found = []
    for path in _python_files("core"):
        for node, module in _imported_modules(_parse(path)):
            if module.split(".")[0] in APPS:
                found.append(f"{_where(path, node)}: imports {module}")
    return found


def test_the_apps_are_known() -> None:
    assert {"accounts", "orchestration", "billing", "frontend"} <= set(APPS)


def test_core_imports_no_app() -> None:
    found = core_imports_of_apps()
    assert not found, (
        "core is plumbing and must not import an app (move the code into the app, or let the app "
        "register with core):\n  " + "\n  ".join(found)
    )


# --- 2. only the engine writes run state ---------------------------------------------------------

STATE_COLUMNS = frozenset(
    field.name
    for model in (FlowRun, TaskRun)
    for field in model._meta.concrete_fields
    if field.name.startswith("state_")
)
HISTORY_MODELS = frozenset({FlowRunState.__name__, TaskRunState.__name__})
RUN_MODELS = frozenset({FlowRun.__name__, TaskRun.__name__})
# Other models may have a column of the same name (a bulk action's ``state_type`` is what it marks
# runs with): a write through their manager, ``BulkAction.objects.create(state_type=…)``, is fine.
OTHER_MODELS = frozenset(model.__name__ for model in apps.get_models()) - RUN_MODELS
# Calls whose keyword arguments (or ``defaults``) are column values written to the database.
ROW_WRITES = frozenset({"update", "create", "get_or_create", "update_or_create"}) | RUN_MODELS
# Calls that name the columns they write as strings.
COLUMN_LIST_WRITES = frozenset({"bulk_update", "save"})
HISTORY_WRITES = frozenset({"create", "bulk_create", "get_or_create", "update_or_create"})


def _state_keys(node: ast.AST) -> set[str]:
    """State columns named as keys of a dict literal (``defaults={"state_type": …}``, ``**{…}``)."""
    if not isinstance(node, ast.Dict):
        return set()
    return {k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in STATE_COLUMNS}


def _root_name(node: ast.AST) -> str | None:
    """The name a chain starts from: ``FlowRunState`` for ``FlowRunState.objects.for_workspace(w).create``."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return None


def _unpacked(targets: list[ast.expr]) -> Iterator[ast.expr]:
    """Assignment targets with tuples opened (``a.x, b.y = …``); subscripts and attributes whole."""
    for target in targets:
        if isinstance(target, (ast.Tuple, ast.List)):
            yield from _unpacked(list(target.elts))
        elif isinstance(target, ast.Starred):
            yield from _unpacked([target.value])
        else:
            yield target


def _column_lists(tree: ast.Module) -> dict[str, set[str]]:
    """Module-level names bound to literal lists of strings (``_UPDATE_FIELDS = ["state_type", …]``),
    so ``bulk_update(runs, _UPDATE_FIELDS)`` is read like ``bulk_update(runs, ["state_type", …])``."""
    lists: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, (ast.List, ast.Tuple, ast.Set)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    lists[target.id] = set(_strings(node.value))
    return lists


def _sql_text(node: ast.AST) -> str | None:
    """The text of a string literal or an f-string (its interpolations as ``{}``), lower-cased."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    else:
        return None
    return " ".join(text.split()).lower()


def _state_writes(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    column_lists = _column_lists(tree)
    for node in ast.walk(tree):
        # run.state_type = …, run.state_version += 1
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets: list[ast.expr] = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in _unpacked(targets):
                if isinstance(target, ast.Attribute) and target.attr in STATE_COLUMNS:
                    yield node, f"assigns .{target.attr}"
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node)
        # runs.update(state_type=…), FlowRun(state_name=…), update_or_create(defaults={"state_type": …})
        if callee in ROW_WRITES and _root_name(node) not in OTHER_MODELS:
            columns = {str(kw.arg) for kw in node.keywords if kw.arg in STATE_COLUMNS}
            for kw in node.keywords:
                columns |= _state_keys(kw.value)
            if columns:
                yield node, f"{callee}() sets {', '.join(sorted(columns))}"
        # FlowRun.objects.bulk_update(runs, ["state_type", …]), run.save(update_fields=["state_name"])
        if callee in COLUMN_LIST_WRITES:
            named = [column_lists.get(n.id, set()) for n in ast.walk(node) if isinstance(n, ast.Name)]
            columns = {s for s in _strings(node) if s in STATE_COLUMNS}.union(*named) & STATE_COLUMNS
            if columns:
                yield node, f"{callee}() writes {', '.join(sorted(columns))}"
        # setattr(run, "state_type", …)
        if callee == "setattr" and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and name.value in STATE_COLUMNS:
                yield node, f"setattr() of {name.value}"
        # FlowRunState.objects.create(…), TaskRunState(…)
        constructs_history = callee in HISTORY_MODELS and isinstance(node.func, ast.Name)
        saves_history = callee in HISTORY_WRITES and _root_name(node.func) in HISTORY_MODELS
        if constructs_history or saves_history:
            yield node, f"writes a state history row ({callee})"
    # Raw SQL: UPDATE … SET state_type = …
    in_fstrings = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        sql = None if id(node) in in_fstrings else _sql_text(node)
        if sql and "update " in sql and " set " in sql and any(re.search(rf"\b{column}\s*=", sql)
                                                                for column in STATE_COLUMNS):
            yield node, "raw SQL sets a state column"


def state_writes_outside_the_engine() -> list[str]:
    found: list[str] = []
    for path in _python_files(*SERVER_PACKAGES):
        if path.is_relative_to(ENGINE):
            continue
        found.extend(f"{_where(path, node)}: {what}" for node, what in _state_writes(_parse(path)))
    return sorted(set(found))


def test_the_state_columns_are_known_and_the_engine_writes_them() -> None:
    assert {"state_type", "state_name", "state_timestamp", "state_version"} <= STATE_COLUMNS
    # If the engine moved, or the check went blind, this rule would pass for nothing.
    assert any(any(_state_writes(_parse(path))) for path in ENGINE.rglob("*.py"))


def test_only_the_engine_writes_run_state() -> None:
    found = state_writes_outside_the_engine()
    assert not found, (
        "Only orchestration/engine/ changes a run's state (columns "
        + ", ".join(sorted(STATE_COLUMNS))
        + " and the state history): call the engine instead.\n  "
        + "\n  ".join(found)
    )


# --- the checks themselves ------------------------------------------------------------------------


def _writes_in(source: str) -> list[str]:
    return [what for _, what in _state_writes(ast.parse(source))]


def test_the_state_check_catches_each_kind_of_write() -> None:
    assert _writes_in("run.state_type = 'RUNNING'") == ["assigns .state_type"]
    assert _writes_in("run.state_version += 1") == ["assigns .state_version"]
    assert _writes_in("FlowRun.objects.filter(pk=1).update(state_version=F('state_version') + 1)") == [
        "update() sets state_version"
    ]
    assert _writes_in("TaskRun(flow_run=run, state_name='Pending')") == ["TaskRun() sets state_name"]
    assert _writes_in("x.update_or_create(pk=1, defaults={'state_type': 'X'})") == [
        "update_or_create() sets state_type"
    ]
    assert _writes_in("run.save(update_fields=['state_name', 'end_time'])") == ["save() writes state_name"]
    assert _writes_in("FlowRunState.objects.for_workspace(w).create(type='X')") == [
        "writes a state history row (create)"
    ]
    assert _writes_in("rows.append(TaskRunState(task_run=t))") == ["writes a state history row (TaskRunState)"]
    assert _writes_in("sql = 'UPDATE orchestration_flowrun SET state_type = %s'") == ["raw SQL sets a state column"]
    assert _writes_in("sql = f'UPDATE {t} SET state_name=%s WHERE id = %s'") == ["raw SQL sets a state column"]
    assert _writes_in("FIELDS = ['state_type', 'result_ref']\nTaskRun.objects.bulk_update(runs, FIELDS)") == [
        "bulk_update() writes state_type"
    ]
    # Reads are fine, and so are other models' columns of the same name.
    assert _writes_in("runs.filter(state_type='RUNNING').values('state_name'); x = run.state_type") == []
    assert _writes_in("counts[apply(bulk.state_type)] += 1") == []
    assert _writes_in("BulkAction.objects.unscoped().create(state_type='FAILED')") == []


def test_the_import_check_catches_lazy_and_dynamic_imports() -> None:
    tree = ast.parse("def f():\n    from accounts.authz import NotFound\n    import_module('orchestration.x')\n")
    assert [module for _, module in _imported_modules(tree)] == ["accounts.authz", "orchestration.x"]


# --- 3. citations a maintainer can look up -------------------------------------------------------

RELIABILITY = ROOT / "docs" / "reliability.md"
CITING_PACKAGES = (*SERVER_PACKAGES, "tests", "agents_sdk", "bench", "scripts")
DEFINED_CODES = frozenset(re.findall(r"^- \*\*([A-Z]\d+)\*\*", RELIABILITY.read_text(encoding="utf-8"), re.MULTILINE))
# A code is a section letter of the page and a number: "D6", "E1–E3". Letters the page does not use
# are left alone, so "S3" or "P95" in a comment is not taken for a code.
SECTIONS = "".join(sorted({code[0] for code in DEFINED_CODES}))  # "ABCDEFG"
CODE = re.compile(rf"\b([{SECTIONS}]\d{{1,2}})\b")
DOCUMENT = re.compile(r"\b([\w./-]+\.md)\b")


def _prose(path: Path) -> Iterator[tuple[int, str]]:
    """Every comment and docstring of a file that cites anything at all, with its line."""
    source = path.read_text(encoding="utf-8")
    if not (CODE.search(source) or DOCUMENT.search(source)):
        return  # tokenizing is slow: most files cite nothing
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node, clean=False)
            if docstring is not None:
                yield node.body[0].lineno, docstring


def _document_exists(name: str, path: Path) -> bool:
    return any((base / name).exists() for base in (ROOT, ROOT / "docs", path.parent))


def citations_nobody_can_look_up() -> list[str]:
    found: list[str] = []
    for path in _python_files(*CITING_PACKAGES):
        for line, text in _prose(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            found.extend(
                f"{where}: cites {code}, which docs/reliability.md does not define"
                for code in CODE.findall(text)
                if code not in DEFINED_CODES
            )
            found.extend(
                f"{where}: cites {document}, which is not in the repo"
                for document in DOCUMENT.findall(text)
                if not _document_exists(document, path)
            )
    return found


def test_comments_cite_only_what_the_repo_defines() -> None:
    assert len(DEFINED_CODES) > 20, "docs/reliability.md defines no codes in the '- **D6** …' form any more"
    found = citations_nobody_can_look_up()
    assert not found, (
        "Say the property in words, or cite a code docs/reliability.md defines or a document in the repo:\n  "
        + "\n  ".join(found)
    )
