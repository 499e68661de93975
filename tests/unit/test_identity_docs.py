"""docs/deploy.md's identity examples are settings Enclave loads, and every `auth.*` / `ui.sso_*`
setting the docs name exists: a renamed or invented setting fails here, not at a customer's site."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from core.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = Path(__file__).resolve().parents[2] / "README.md"


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The settings model a field holds, through `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _exists(dotted: str) -> bool:
    model: type[BaseModel] | None = Settings
    for part in dotted.split("."):
        if model is None or part not in model.model_fields:
            return False
        model = _model_of(model.model_fields[part].annotation)
    return True


def test_every_auth_example_in_the_deploy_guide_loads() -> None:
    blocks = [b for b in _yaml_blocks((DOCS / "deploy.md").read_text(encoding="utf-8")) if "auth:" in b]
    assert len(blocks) >= 4  # Active Directory, OpenLDAP, Keycloak, the proxy's groups
    for block in blocks:
        Settings(**yaml.safe_load(block))  # extra="forbid": a misspelt key fails


@pytest.mark.parametrize("doc", [DOCS / "deploy.md", DOCS / "security.md", README], ids=lambda p: p.name)
def test_every_identity_setting_the_docs_name_exists(doc: Path) -> None:
    named = set(re.findall(r"`((?:auth|ui)\.[a-z_.]*[a-z_])`", doc.read_text(encoding="utf-8")))
    identity = {n for n in named if n.startswith("auth.") or n.startswith("ui.sso")}
    assert identity or doc.name == "README.md"
    assert not {n for n in identity if not _exists(n)}
