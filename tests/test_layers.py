"""The package's layers, checked from the source: who may import whom, and no import cycles.

Every ``import`` in every module of ``safetunnel/`` counts, also inside functions (lazy) and under
``if TYPE_CHECKING:``: a layer rule is about what a module knows of, not about when it loads it.
Cycles are about load order, so only imports that run when the module itself is imported (module
level, not TYPE_CHECKING) make an edge there.

The checker reads module *texts*, so a test can feed it a synthetic module and prove that it
catches a forbidden import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Sandbox

PACKAGE = "safetunnel"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
PURE_LEAVES = ("errors", "tokens", "durations", "timefmt", "addresses")
SUBPACKAGES = ("gate", "ssh", "sharing", "registry", "hosts", "secrets", "receiving", "cli")


@dataclass(frozen=True)
class Import:
    """One import statement's target, as a module of the package."""

    source: str  # importing module, e.g. "safetunnel.ssh.client"
    target: str  # imported module, e.g. "safetunnel.errors"
    line: int
    runtime: bool  # runs when ``source`` itself is imported (module level, not TYPE_CHECKING)

    def __str__(self) -> str:
        kind = "" if self.runtime else " (lazy or TYPE_CHECKING)"
        return f"{self.source} imports {self.target} (line {self.line}){kind}"


def module_texts(root: Path = ROOT) -> dict[str, str]:
    """``{"safetunnel.ssh.client": source text, ...}`` for every module of the package."""
    texts: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        texts[name] = path.read_text(encoding="utf-8")
    return texts


def _is_package(name: str, texts: Mapping[str, str]) -> bool:
    return any(other.startswith(name + ".") for other in texts)


def _resolve(node: ast.Import | ast.ImportFrom, source: str, texts: Mapping[str, str]) -> list[str]:
    """The package modules an import statement names (a ``from m import x`` names ``m.x`` when
    that is a module, else ``m``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        here = source if _is_package(source, texts) else source.rpartition(".")[0]
        for _ in range(node.level - 1):
            here = here.rpartition(".")[0]
        base = f"{here}.{base}" if base else here
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in texts else base for a in node.names]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(body: Iterable[ast.stmt], runtime: bool) -> Iterable[tuple[ast.stmt, bool]]:
    """Every statement with whether it runs at import time of its module."""
    for stmt in body:
        yield stmt, runtime
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(stmt.body, False)
        elif isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
            yield from _walk(stmt.body, False)
            yield from _walk(stmt.orelse, runtime)
        else:
            for child in ast.iter_child_nodes(stmt):
                if isinstance(child, ast.stmt):
                    yield from _walk([child], runtime)
                elif isinstance(child, ast.ExceptHandler):
                    yield from _walk(child.body, runtime)


def imports_of(source: str, text: str, texts: Mapping[str, str]) -> list[Import]:
    """The package-internal imports of one module."""
    found: dict[Import, None] = {}  # ordered and without repeats (``from m import a, b``)
    for stmt, runtime in _walk(ast.parse(text).body, True):
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            for target in _resolve(stmt, source, texts):
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    found[Import(source, target, stmt.lineno, runtime)] = None
    return list(found)


def all_imports(texts: Mapping[str, str]) -> list[Import]:
    return [imp for name, text in texts.items() for imp in imports_of(name, text, texts)]


# ------------------------------------------------------------------------------------ the rules


def _in(module: str, *areas: str) -> bool:
    """Whether ``module`` is one of ``areas`` (``"ssh"``, ``"errors"``...) or inside one."""
    return any(
        module == f"{PACKAGE}.{area}" or module.startswith(f"{PACKAGE}.{area}.") for area in areas
    )


@dataclass(frozen=True)
class Rule:
    name: str
    why: str
    applies: Callable[[str], bool]  # to the importing module
    forbidden: Callable[[str], bool]  # the imported module


def _not_in(*areas: str) -> Callable[[str], bool]:
    return lambda target: not _in(target, *areas)


RULES = [
    Rule(
        "gate",
        "the gate is a pure decision engine: it may know the token format and nothing else",
        lambda m: _in(m, "gate"),
        _not_in("gate", "tokens"),
    ),
    Rule(
        "registry",
        "records, control and audit must work (list, kill, status) without the SSH stack",
        lambda m: _in(m, "registry"),
        lambda t: _in(t, "ssh", "sharing", "gate"),
    ),
    Rule(
        "hosts-secrets",
        "host and secret lookups serve the share; they never drive it",
        lambda m: _in(m, "hosts", "secrets"),
        lambda t: _in(t, "sharing", "registry", "gate", "cli"),
    ),
    Rule(
        "ssh",
        "the SSH engine carries bytes; what a share is lives above it",
        lambda m: _in(m, "ssh"),
        lambda t: _in(t, "sharing", "registry", "cli", "gate"),
    ),
    Rule(
        "receiving",
        "a recipient needs SSH, hosts and secrets; it knows nothing of how a share runs",
        lambda m: _in(m, "receiving"),
        lambda t: _in(t, "sharing", "registry", "gate", "cli"),
    ),
    Rule(
        "sharing-not-receiving",
        "the sharer's side and the recipient's meet only in the ticket",
        lambda m: _in(m, "sharing", "ssh", "registry", "gate", "hosts", "secrets"),
        lambda t: _in(t, "receiving"),
    ),
    Rule(
        "pure-leaves",
        "pure leaves are imported from everywhere, so they may import only errors",
        lambda m: _in(m, *PURE_LEAVES),
        _not_in("errors"),
    ),
    Rule(
        "cli-on-top",
        "only the command line knows the command line",
        lambda m: not _in(m, "cli", "__main__"),
        lambda t: _in(t, "cli"),
    ),
]


def violations(rule: Rule, imports: Iterable[Import]) -> list[str]:
    return [
        f"{imp}: forbidden ({rule.name}: {rule.why})"
        for imp in imports
        if rule.applies(imp.source) and rule.forbidden(imp.target)
    ]


def find_cycle(imports: Iterable[Import]) -> list[str] | None:
    """One cycle of imports (as a module path that returns to its start), or None.

    Lazy and TYPE_CHECKING imports count too: they do not fail at import time, but two modules
    that need each other are one module in two files, whatever the import says."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def eager_init_imports(texts: Mapping[str, str]) -> dict[str, list[str]]:
    """Sub-package ``__init__``s that import package modules when imported (not lazily)."""
    eager: dict[str, list[str]] = {}
    for package in SUBPACKAGES:
        if package == "cli":
            continue  # the command group itself; its laziness is what test_fast_paths checks
        name = f"{PACKAGE}.{package}"
        found = [str(i) for i in imports_of(name, texts.get(name, ""), texts) if i.runtime]
        if found:
            eager[name] = found
    return eager


# ---------------------------------------------------------------------------- the real package

TEXTS = module_texts()
IMPORTS = all_imports(TEXTS)
# Violations in files being reworked elsewhere right now; each marker fails loudly once fixed.
KNOWN: dict[str, str] = {}


def test_the_checker_sees_the_package() -> None:
    assert {"safetunnel.gate.core", "safetunnel.ssh.client", "safetunnel.cli"} <= set(TEXTS)
    assert any(i.target == "safetunnel.errors" for i in IMPORTS)
    assert any(not i.runtime for i in IMPORTS)  # lazy imports are found too


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(r, marks=pytest.mark.xfail(strict=True, reason=KNOWN[r.name]))
        if r.name in KNOWN
        else r
        for r in RULES
    ],
    ids=[r.name for r in RULES],
)
def test_layer_rule(rule: Rule) -> None:
    found = violations(rule, IMPORTS)
    assert not found, "\n".join(found)


def test_no_import_cycles() -> None:
    cycle = find_cycle(IMPORTS)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_subpackage_inits_are_empty_or_lazy() -> None:
    eager = eager_init_imports(TEXTS)
    assert not eager, "\n".join(line for lines in eager.values() for line in lines)


def test_subpackage_inits_except_gate_are_empty_or_lazy() -> None:
    eager = eager_init_imports(TEXTS)
    eager.pop("safetunnel.gate", None)
    assert not eager, "\n".join(line for lines in eager.values() for line in lines)


# ------------------------------------------------------------------- the checker can fail


def _with(name: str, text: str) -> list[Import]:
    texts = {**TEXTS, name: text}
    return all_imports(texts)


@pytest.mark.parametrize(
    ("module", "text", "rule", "edge"),
    [
        (
            "safetunnel.gate.extra",
            "from safetunnel.ssh.session import SSHSession\n",
            "gate",
            "safetunnel.gate.extra imports safetunnel.ssh.session",
        ),
        (
            "safetunnel.registry.extra",
            "def f():\n    from safetunnel.sharing import tunnel\n",
            "registry",
            "safetunnel.registry.extra imports safetunnel.sharing.tunnel",
        ),
        (
            "safetunnel.secrets.extra",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import safetunnel.cli\n",
            "hosts-secrets",
            "safetunnel.secrets.extra imports safetunnel.cli",
        ),
        (
            "safetunnel.ssh.extra",
            "try:\n    from ..registry import records\nexcept ImportError:\n    pass\n",
            "ssh",
            "safetunnel.ssh.extra imports safetunnel.registry.records",
        ),
        (
            "safetunnel.addresses",
            "from safetunnel import fsutil\n",
            "pure-leaves",
            "safetunnel.addresses imports safetunnel.fsutil",
        ),
        (
            "safetunnel.receiving.extra",
            "from safetunnel.sharing.tunnel import Tunnel\n",
            "receiving",
            "safetunnel.receiving.extra imports safetunnel.sharing.tunnel",
        ),
        (
            "safetunnel.sharing.extra",
            "from safetunnel.receiving.relay import Relay\n",
            "sharing-not-receiving",
            "safetunnel.sharing.extra imports safetunnel.receiving.relay",
        ),
        (
            "safetunnel.sharing.extra",
            "from safetunnel.cli.render import table\n",
            "cli-on-top",
            "safetunnel.sharing.extra imports safetunnel.cli.render",
        ),
    ],
)
def test_checker_catches_a_forbidden_import(module: str, text: str, rule: str, edge: str) -> None:
    (chosen,) = [r for r in RULES if r.name == rule]
    found = violations(chosen, _with(module, text))
    assert [line for line in found if line.startswith(edge)], found
    assert all(chosen.why in line for line in found)


def test_checker_catches_a_cycle_also_through_lazy_imports() -> None:
    texts = {
        **TEXTS,
        "safetunnel.durations": TEXTS["safetunnel.durations"] + "\nimport safetunnel.timefmt\n",
        "safetunnel.timefmt": TEXTS["safetunnel.timefmt"] + "\nimport safetunnel.durations\n",
    }
    cycle = find_cycle(all_imports(texts))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {"safetunnel.durations", "safetunnel.timefmt"} <= set(cycle)
    lazy = {
        **TEXTS,
        "safetunnel.durations": TEXTS["safetunnel.durations"] + "\nimport safetunnel.timefmt\n",
        "safetunnel.timefmt": TEXTS["safetunnel.timefmt"]
        + "\ndef f():\n    import safetunnel.durations\n",
    }
    assert find_cycle(all_imports(lazy)) is not None


def test_checker_catches_an_eager_init() -> None:
    texts = {**TEXTS, "safetunnel.hosts": '"""Hosts."""\nfrom safetunnel.hosts import config\n'}
    assert "safetunnel.hosts" in eager_init_imports(texts)


# ------------------------------------------------------------------------- fast command paths

HEAVY = {"paramiko", "h11", "cryptography", "nacl"}


@pytest.mark.parametrize("argv", [["--help"], ["list"]])
def test_fast_paths_import_no_ssh_stack(sandbox: Sandbox, argv: list[str]) -> None:
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['safetunnel', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('safetunnel', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=sandbox.env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    loaded = set(ast.literal_eval(out.stdout.strip().splitlines()[-1]))
    assert "click" in loaded  # the command really ran
    assert not loaded & HEAVY, f"`safetunnel {' '.join(argv)}` imports {sorted(loaded & HEAVY)}"
