"""Imports flow one way (STYLE.md): enclave -> ui -> assistant -> {audit, vectorstore} -> core,
and enclave -> ingest -> vectorstore -> core. ui and ingest never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["core", "vectorstore", "ingest", "audit", "assistant", "ui", "enclave"]
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "vectorstore": {"core"},
    "audit": {"core"},
    "ingest": {"vectorstore", "core"},
    "assistant": {"audit", "vectorstore", "core"},
    "ui": {"assistant", "audit", "vectorstore", "core"},
    "enclave": set(PACKAGES) - {"enclave"},
}
# Library types stay inside the package that wraps them.
LIBRARY_OWNERS = {
    "chromadb": {"vectorstore"},
    "sentence_transformers": {"vectorstore"},
    "unstructured": {"ingest"},
    "gradio": {"ui"},
    "langchain_openai": {"assistant"},
    "openai": {"assistant"},
    "markdown_it": {"ui"},
    "nh3": {"ui"},
    "smbclient": {"ingest"},
    "smbprotocol": {"ingest"},
    "imapclient": {"ingest"},
    "authlib": {"ui"},
    "joserfc": {"ui"},
    "ldap3": {"ui"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "demo_corpus" not in p.parts]


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down(package: str) -> None:
    offenders = []
    for path in sources(package):
        for name in imported_modules(path):
            if name in PACKAGES and name != package and name not in ALLOWED[package]:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package", PACKAGES)
def test_library_types_stay_in_their_package(package: str) -> None:
    offenders = []
    for path in sources(package):
        for name in imported_modules(path):
            owners = LIBRARY_OWNERS.get(name)
            if owners is not None and package not in owners:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from ui.app import build_app\nimport chromadb\n")
    assert imported_modules(bad) == {"ui", "chromadb"}
