"""Operators' pure parts: code hashes (Python source, shell commands), descriptions, contexts."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rota.model.dag import Operator
from rota.operators.base import ExecContext, digest, source_hash
from rota.operators.python import PythonOp
from rota.operators.shell import ShellOp

_modules = itertools.count()


def load_fn(tmp_path: Path, source: str, name: str = "fn") -> Callable[..., Any]:
    """Write *source* to a new module file, import it, and return its function *name*."""
    n = next(_modules)
    path = tmp_path / f"rota_hash_case_{n}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"rota_hash_case_{n}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, name)
    assert callable(fn)
    return fn  # type: ignore[no-any-return]


def exec_fn(source: str, name: str = "fn") -> Callable[..., Any]:
    """Define a function from *source* with no file behind it (as a REPL or notebook would)."""
    namespace: dict[str, Any] = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]


BASE = """
def fn(x, y=2):
    total = x + y
    return total * 3
"""

# Same code as BASE: only comments, docstrings, formatting, blank lines or decorators differ.
SAME = {
    "comments": """
# a comment before the function
def fn(x, y=2):  # trailing comment
    # explain the sum
    total = x + y
    return total * 3  # and the product
""",
    "docstring": '''
def fn(x, y=2):
    """Add and triple.

    Args:
        x: a number.
    """
    total = x + y
    return total * 3
''',
    "formatting": """
def fn( x,
        y = 2 ):

    total = (x +
             y)


    return total*3
""",
    "indent-width": """
def fn(x, y=2):
        total = x + y
        return (total * 3)
""",
    "decorator": """
def deco(f):
    return f

@deco
def fn(x, y=2):
    total = x + y
    return total * 3
""",
}

# A real change of code in each.
DIFFERENT = {
    "constant": BASE.replace("* 3", "* 4"),
    "operator": BASE.replace("x + y", "x - y"),
    "default": BASE.replace("y=2", "y=3"),
    "variable": BASE.replace("total", "acc"),
    "parameter": BASE.replace("x, y=2", "x, z, y=2"),
    "extra-statement": BASE.replace("    return", "    print(total)\n    return"),
    "string-in-body": BASE.replace("    total", '    print("a")\n    total'),
}


def test_source_hash_is_a_stable_hex_digest(tmp_path: Path) -> None:
    fn = load_fn(tmp_path, BASE)
    h = source_hash(fn)
    assert len(h) == 32
    int(h, 16)
    assert source_hash(fn) == h
    assert source_hash(load_fn(tmp_path, BASE)) == h  # another object, same source


@pytest.mark.parametrize("variant", sorted(SAME))
def test_source_hash_ignores_comments_docstrings_and_formatting(
    tmp_path: Path, variant: str
) -> None:
    base = load_fn(tmp_path, BASE)
    other = load_fn(tmp_path, SAME[variant])
    assert other(1) == base(1) == 9
    assert source_hash(other) == source_hash(base)


@pytest.mark.parametrize("variant", sorted(DIFFERENT))
def test_source_hash_changes_with_the_code(tmp_path: Path, variant: str) -> None:
    base = load_fn(tmp_path, BASE)
    other = load_fn(tmp_path, DIFFERENT[variant])
    assert source_hash(other) != source_hash(base)


def test_source_hash_strips_nested_docstrings_too(tmp_path: Path) -> None:
    outer = """
def fn():
    def inner():
        {doc}
        return 1
    return inner()
"""
    a = load_fn(tmp_path, outer.format(doc='"""Inner doc."""'))
    b = load_fn(tmp_path, outer.format(doc='"""Other words."""'))
    c = load_fn(tmp_path, outer.format(doc="pass"))
    assert source_hash(a) == source_hash(b)
    assert source_hash(a) != source_hash(c)


def test_source_hash_of_a_docstring_only_function(tmp_path: Path) -> None:
    a = load_fn(tmp_path, 'def fn():\n    """Only a docstring."""\n')
    b = load_fn(tmp_path, "def fn():\n    pass\n")
    c = load_fn(tmp_path, "def fn():\n    return 1\n")
    assert source_hash(a) == source_hash(b)
    assert source_hash(a) != source_hash(c)


def test_source_hash_without_source_falls_back_to_bytecode() -> None:
    a = exec_fn("def fn(x):\n    return x + 1\n")
    b = exec_fn("def fn(x):\n    return x + 1\n")
    c = exec_fn("def fn(x):\n    y = x + 1\n    return y * y\n")
    assert source_hash(a) == source_hash(b)
    assert source_hash(a) != source_hash(c)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("def fn(x):\n    return x + 1\n", "def fn(x):\n    return x + 2\n"),
        ("def fn(x):\n    return x.imag\n", "def fn(x):\n    return x.real\n"),
    ],
    ids=["constant", "attribute"],
)
def test_source_hash_fallback_changes_with_constants_and_names(before: str, after: str) -> None:
    assert source_hash(exec_fn(after)) != source_hash(exec_fn(before))


def test_digest_separates_parts() -> None:
    assert digest("ab", "c") != digest("a", "bc")
    assert digest("a") == digest("a")
    assert digest("a") != digest("b")


# --- PythonOp ----------------------------------------------------------------------------------


def module_level(x: int, y: int = 1) -> int:
    return x * 10 + y


def module_level_ctx(x: int, ctx: ExecContext) -> str:
    return f"{ctx.run_id}/{ctx.task_id}/{ctx.try_number}:{x}"


CTX = ExecContext(run_id="r1", flow="f", task_id="t", try_number=2, params={"p": 1})


def test_python_op() -> None:
    op = PythonOp(module_level)
    assert isinstance(op, Operator)
    assert op.kind == "python"
    assert op.describe() == f"{__name__}.module_level"
    assert op.code_hash() == source_hash(module_level)
    assert op.code_hash() != PythonOp(module_level_ctx).code_hash()
    assert op.execute(CTX, (4,), {"y": 5}) == 45


def test_python_op_passes_ctx_only_when_asked() -> None:
    assert PythonOp(module_level_ctx, takes_ctx=True).execute(CTX, (7,), {}) == "r1/t/2:7"
    with pytest.raises(TypeError):
        PythonOp(module_level_ctx).execute(CTX, (7,), {})


def test_python_op_lets_exceptions_through() -> None:
    def boom() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        PythonOp(boom).execute(CTX, (), {})


def test_exec_context_environ() -> None:
    env = CTX.environ()
    assert {k: env[k] for k in ("ROTA_RUN_ID", "ROTA_FLOW", "ROTA_TASK_ID", "ROTA_TRY_NUMBER")} == {
        "ROTA_RUN_ID": "r1",
        "ROTA_FLOW": "f",
        "ROTA_TASK_ID": "t",
        "ROTA_TRY_NUMBER": "2",
    }
    assert env["ROTA_DS"] == ""  # the context has no run dates
    assert all(isinstance(v, str) for v in env.values())


# --- ShellOp -----------------------------------------------------------------------------------


def test_shell_op_describe_and_kind() -> None:
    op = ShellOp("echo hi")
    assert isinstance(op, Operator)
    assert op.kind == "shell"
    assert op.describe() == "echo hi"


def test_shell_op_code_hash_changes_with_command_env_and_cwd() -> None:
    base = ShellOp("echo $A", {"A": "1", "B": "2"}, "/tmp")
    h = base.code_hash()
    assert ShellOp("echo $A", {"A": "1", "B": "2"}, "/tmp").code_hash() == h
    assert ShellOp("echo $A", {"B": "2", "A": "1"}, "/tmp").code_hash() == h  # order-free
    changed = [
        ShellOp("echo $B", {"A": "1", "B": "2"}, "/tmp"),
        ShellOp("echo  $A", {"A": "1", "B": "2"}, "/tmp"),
        ShellOp("echo $A", {"A": "9", "B": "2"}, "/tmp"),
        ShellOp("echo $A", {"A": "1", "C": "2"}, "/tmp"),
        ShellOp("echo $A", {"A": "1"}, "/tmp"),
        ShellOp("echo $A", {"A": "1", "B": "2"}, "/var"),
        ShellOp("echo $A", {"A": "1", "B": "2"}, None),
    ]
    hashes = [op.code_hash() for op in changed]
    assert h not in hashes
    assert len(set(hashes)) == len(hashes)
