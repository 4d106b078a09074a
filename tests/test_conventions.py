"""The code conventions of mae_nb, checked by reading its source (AST) rather than by hope.

Each test lists every violation it finds, as ``path:line: what``, so one run shows all the work
left. The layering itself is checked by import-linter (``lint-imports``, the contracts in
pyproject.toml); ruff checks style. See ``../shared/STYLE.md`` and ``mae_nb/errors.py``.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import importlib
import re
import sys
import types
import typing
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

import mae_nb.cli
from mae_nb.errors import InputError, MaeNbError

PACKAGE = Path(mae_nb.cli.__file__).resolve().parents[1]
ROOT = PACKAGE.parent

#: Standard exceptions mae_nb may raise itself, each for a reason no MaeNbError would serve.
ALLOWED_STANDARD_RAISES = {
    # an abstract method or an option a subclass must provide: a programming error, not input
    NotImplementedError,
    # the command line's own ways to stop (argparse and Ctrl-C), handled by Python itself
    KeyboardInterrupt,
    SystemExit,
    # the iterator protocol: Python's for-loop expects exactly this exception
    StopIteration,
}

#: Public top-level names that several modules define on purpose, with the reason.
SHARED_NAMES = {
    # the CLI's protocol: `mae_nb.cli` calls `add_parser(sub)` on every sub-command module
    "add_parser": "mae_nb/cli/",
}


def _modules() -> list[tuple[str, Path]]:
    """(dotted name, path) of every module of mae_nb."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


MODULES = _modules()
PACKAGE_MODULES = {name for name, _ in MODULES}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _where(path: Path, node: ast.AST | None = None) -> str:
    line = f":{node.lineno}" if node is not None and hasattr(node, "lineno") else ""
    return f"{path.relative_to(ROOT)}{line}"


def _is_package(module: str) -> bool:
    path = dict(MODULES).get(module)
    return path is not None and path.name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` in ``module`` reads from."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts[: len(parts) - node.level + _is_package(module)]
    return ".".join(base + ([node.module] if node.module else []))


def _path_of(module: str) -> Path:
    return dict(MODULES)[module]


def _imported_names(module: str, tree: ast.Module) -> dict[str, tuple[str, str | None]]:
    """Every name an import binds anywhere in ``tree`` (functions included).

    ``name -> (module, attribute)``; ``attribute`` is None for ``import x.y [as z]``.
    """
    names: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = (alias.name, None)
                else:
                    top = alias.name.split(".")[0]
                    names[top] = (top, None)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                names[alias.asname or alias.name] = (source, alias.name)
    return names


def _load(source: str, attribute: str | None) -> object:
    """The object an import names, or None when it cannot be had."""
    try:
        mod = importlib.import_module(source)
    except ImportError:
        return None
    if attribute is None:
        return mod
    if hasattr(mod, attribute):
        return getattr(mod, attribute)
    try:
        return importlib.import_module(f"{source}.{attribute}")
    except ImportError:
        return None


_UNKNOWN = object()  # a name bound at run time (a local variable): not checked


def _resolve(node: ast.expr, namespace: dict, imports: dict) -> object:
    """The object ``node`` (a name or a dotted attribute) names, or _UNKNOWN."""
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, namespace, imports)
        if isinstance(base, types.ModuleType):
            return getattr(base, node.attr, _UNKNOWN)
        return _UNKNOWN
    if not isinstance(node, ast.Name):
        return _UNKNOWN
    if node.id in namespace:
        return namespace[node.id]
    if node.id in imports:
        found = _load(*imports[node.id])
        return _UNKNOWN if found is None else found
    return getattr(builtins, node.id, _UNKNOWN)


def _raise_problem(value: object, called: bool) -> str | None:
    """Why raising ``value`` (called when ``called``) breaks the convention, or None."""
    if value is _UNKNOWN:
        return None  # `raise exc`, `raise error_type(...)`: a variable, checked where it was made
    if isinstance(value, type) and issubclass(value, BaseException):
        if issubclass(value, MaeNbError) or value in ALLOWED_STANDARD_RAISES:
            return None
        return f"raises {value.__name__}, which is not a MaeNbError (see mae_nb/errors.py)"
    if called and callable(value):  # `raise make_error(...)`: the factory says what it returns
        try:
            returned = typing.get_type_hints(value).get("return")
        except Exception:
            returned = None
        if isinstance(returned, type) and issubclass(returned, MaeNbError):
            return None
        name = getattr(value, "__name__", repr(value))
        return f"raises what {name}() returns; annotate it to return a MaeNbError subclass"
    return None


def _raise_problems(module: str, tree: ast.Module, namespace: dict) -> list[tuple[int, str]]:
    """(line, why) of every ``raise`` in ``tree`` that raises something else than a MaeNbError."""
    imports = _imported_names(module, tree)
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        called = isinstance(node.exc, ast.Call)
        target = node.exc.func if called else node.exc
        problem = _raise_problem(_resolve(target, namespace, imports), called)
        if problem:
            problems.append((node.lineno, problem))
    return problems


def test_every_error_raised_on_purpose_is_a_mae_nb_error():
    problems = []
    for module, path in MODULES:
        try:  # `python -m mae_nb` runs the command when imported: its imports are enough
            namespace = {} if path.stem == "__main__" else vars(importlib.import_module(module))
        except Exception as exc:  # a module mid-way through a change: say so, check the rest
            problems.append(f"{_where(path)}: cannot be imported ({type(exc).__name__}: {exc})")
            continue
        for line, problem in _raise_problems(module, _tree(path), namespace):
            problems.append(f"{_where(path)}:{line}: {problem}")
    assert not problems, "\n".join(problems)


def test_the_command_catches_only_mae_nb_errors_interrupts_and_a_closed_stdout():
    tree = _tree(_path_of("mae_nb.cli"))
    imports = _imported_names("mae_nb.cli", tree)
    namespace = vars(mae_nb.cli)
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    caught = []
    for node in ast.walk(main):  # what a command's error meets (helpers may probe and recover)
        if isinstance(node, ast.ExceptHandler):
            names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            for name in names:
                value = None if name is None else _resolve(name, namespace, imports)
                caught.append((node.lineno, value))
    # BrokenPipeError: only when the reader of stdout has gone (`| head`), else it is re-raised
    allowed = (MaeNbError, KeyboardInterrupt, BrokenPipeError)
    wrong = [f"line {line}: {value}" for line, value in caught if value not in allowed]
    assert not wrong, f"mae_nb/cli/__init__.py catches more than {allowed}: {wrong}"


@pytest.fixture
def command(monkeypatch):
    """A sub-command `boom` whose action raises whatever the test puts in ``raised``."""
    raised: list[BaseException] = []

    def add_parser(sub: argparse._SubParsersAction) -> None:
        def action(args: argparse.Namespace) -> int:
            raise raised[0]

        sub.add_parser("boom").set_defaults(func=action)

    fake = types.ModuleType("mae_nb.cli.boom")
    fake.add_parser = add_parser
    monkeypatch.setitem(sys.modules, "mae_nb.cli.boom", fake)
    monkeypatch.setattr(mae_nb.cli, "COMMANDS", [*mae_nb.cli.COMMANDS, "boom"])
    return raised


def test_a_mae_nb_error_in_a_command_is_one_line_and_exit_status_2(command, capsys):
    command.append(InputError("mask_ratio must be in [0, 1), got 1.2"))
    assert mae_nb.cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err == "mae-nb: error: mask_ratio must be in [0, 1), got 1.2\n"


def test_any_other_exception_in_a_command_shows_its_traceback(command):
    # a bug (here a ValueError from deep inside numpy or torch) must not pass for a user error
    command.append(ValueError("operands could not be broadcast together"))
    with pytest.raises(ValueError, match="broadcast"):
        mae_nb.cli.main(["boom"])


def test_a_broken_pipe_that_is_not_stdout_shows_its_traceback(command):
    # stdout is fine here: the pipe that broke is the command's own (a worker's, a socket's)
    command.append(BrokenPipeError(32, "Broken pipe"))
    with pytest.raises(BrokenPipeError):
        mae_nb.cli.main(["boom"])


def test_an_interrupted_command_says_so_with_exit_status_130(command, capsys):
    command.append(KeyboardInterrupt())
    assert mae_nb.cli.main(["boom"]) == 130
    assert capsys.readouterr().err == "mae-nb: interrupted\n"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_imports(module: str, tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) of every private name ``module`` takes from another mae_nb module."""
    imports = _imported_names(module, tree)
    modules_here = {  # names bound to a mae_nb module: `geotiff._open` reads a private name
        name
        for name, (source, attribute) in imports.items()
        if (source + (f".{attribute}" if attribute else "")) in PACKAGE_MODULES
    }
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            if source.split(".")[0] != "mae_nb" or source == module:
                continue
            for alias in node.names:
                if _private(alias.name):
                    problems.append((node.lineno, f"imports {alias.name} from {source}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mae_nb.") and any(
                    _private(part) for part in alias.name.split(".")
                ):
                    problems.append((node.lineno, f"imports {alias.name}"))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules_here
            and _private(node.attr)
        ):
            problems.append((node.lineno, f"uses {node.value.id}.{node.attr} of another module"))
    return problems


def test_no_private_name_is_imported_from_another_module():
    problems = [
        f"{_where(path)}:{line}: {what}"
        for module, path in MODULES
        for line, what in _private_imports(module, _tree(path))
    ]
    assert not problems, "\n".join(problems)


def _top_level_names(tree: ast.Module) -> dict[str, ast.AST]:
    """Public names a module defines itself at its top level (imports excluded)."""
    defined: dict[str, ast.AST] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.setdefault(node.name, node)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            defined.setdefault(name.id, node)
            elif isinstance(node, ast.If):  # `if TYPE_CHECKING:` and platform branches
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return {name: node for name, node in defined.items() if not name.startswith("_")}


def _names_defined_twice(trees: dict[str, ast.Module]) -> list[str]:
    """Public top-level names that two modules of ``trees`` (path -> tree) define."""
    where: dict[str, list[str]] = defaultdict(list)
    for path, tree in trees.items():
        for name, node in _top_level_names(tree).items():
            where[name].append(f"{path}:{node.lineno}")
    problems = []
    for name, places in sorted(where.items()):
        if len(places) < 2:
            continue
        shared = SHARED_NAMES.get(name)
        if shared and all(place.startswith(shared) for place in places):
            continue
        problems.append(f"{name} is defined in {len(places)} modules: {', '.join(places)}")
    return problems


def test_no_public_name_is_defined_in_two_modules():
    trees = {_where(path): _tree(path) for _, path in MODULES}
    problems = _names_defined_twice(trees)
    assert not problems, "\n".join(problems)


#: A sentence's end inside a line; abbreviations such as "e.g." or "et al." are not ends.
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\bal)[.!?]\s+[A-Z]")


def _docstring_problem(tree: ast.Module) -> str | None:
    """Why the module's docstring does not open with its concept in one sentence line, or None."""
    doc = ast.get_docstring(tree, clean=True)
    if not doc:
        return "no module docstring"
    lines = doc.splitlines()
    first = lines[0].strip()
    if not first:
        return "the docstring's first line is empty"
    if len(lines) > 1 and lines[1].strip():
        return "the first sentence runs onto a second line"
    if not first.endswith((".", "?")):  # a study may state its question
        return "the first line does not end a sentence ('.', '?')"
    if _SENTENCE_END.search(first):
        return "the first line holds more than one sentence"
    return None


def test_every_module_says_its_concept_in_one_sentence_line():
    problems = [
        f"{_where(path)}: {problem}"
        for _, path in MODULES
        if (problem := _docstring_problem(_tree(path)))
    ]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------- the checks check


BAD_MODULE = '''"""A module that breaks every convention. It says so in two sentences."""

from mae_nb import errors
from mae_nb.data import geotiff
from mae_nb.errors import InputError, MaeNbError


class LocalError(Exception):
    pass


def _error(message) -> InputError:
    return InputError(message)


def _anything(message):
    return ValueError(message)


def check(x):  # private imports inside a function: never run, so never out of date
    from mae_nb.data.geotiff import _open
    from mae_nb.data.registry import _matches

    if x is None:
        raise ValueError("x is None")
    if x == 1:
        raise LocalError("one")
    if x == 2:
        raise _anything("two")
    if x == 3:
        raise KeyError
    try:
        geotiff._open(x)
    except OSError as exc:
        raise exc
    raise NotImplementedError


def fine(x):
    if x:
        raise InputError("x")
    if x is None:
        raise errors.RasterError("x")
    raise _error("x") from None


def read_raster():
    """A second read_raster, besides mae_nb.data.geotiff's."""
'''


def test_the_checks_find_what_they_look_for(tmp_path):
    (tmp_path / "mae_nb_bad_example.py").write_text(BAD_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        bad = importlib.import_module("mae_nb_bad_example")
    finally:
        sys.path.remove(str(tmp_path))
    tree = ast.parse(BAD_MODULE)
    line = {text: i for i, text in enumerate(BAD_MODULE.splitlines(), start=1)}

    raised = dict(_raise_problems("mae_nb.bad_example", tree, vars(bad)))
    assert sorted(raised) == sorted(
        line[f"        raise {what}"]
        for what in ('ValueError("x is None")', 'LocalError("one")', '_anything("two")', "KeyError")
    ), raised
    assert "annotate it" in raised[line['        raise _anything("two")']]

    private = _private_imports("mae_nb.bad_example", tree)
    assert sorted(what for _, what in private) == [
        "imports _matches from mae_nb.data.registry",
        "imports _open from mae_nb.data.geotiff",
        "uses geotiff._open of another module",
    ]

    geotiff = PACKAGE / "data" / "geotiff.py"
    twice = _names_defined_twice({"bad.py": tree, "geotiff.py": _tree(geotiff)})
    assert [problem.split(" is defined")[0] for problem in twice] == ["read_raster"]

    assert _docstring_problem(tree) == "the first line holds more than one sentence"
    assert _docstring_problem(ast.parse('"""Two lines\nfor one sentence."""')) == (
        "the first sentence runs onto a second line"
    )
    assert _docstring_problem(ast.parse("x = 1")) == "no module docstring"
    assert _docstring_problem(ast.parse('"""Masking of He et al. (2022), e.g. random."""')) is None
