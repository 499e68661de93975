from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import (
    SECRET_SHOWN,
    Settings,
    flatten,
    load_settings,
    secret_keys,
    setting_sources,
    shown_settings,
)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.data_dir == Path("var")
    assert s.chroma_path == Path("var/chroma")
    assert s.llm.base_url is None
    assert s.network.guard == "strict"


def test_file_then_env_then_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "enclave.yaml"
    cfg.write_text("retrieval:\n  top_k: 9\n  min_score: 0.5\nui:\n  org_name: Harbourview\n")
    monkeypatch.setenv("ENCLAVE_RETRIEVAL__TOP_K", "3")
    s = load_settings(cfg, data_dir=tmp_path / "d")
    assert s.retrieval.top_k == 3  # env beats file
    assert s.retrieval.min_score == 0.5  # file beats default
    assert s.ui.org_name == "Harbourview"
    assert s.data_dir == tmp_path / "d"
    src = setting_sources(s, cfg)
    assert src["retrieval.top_k"] == "env"
    assert src["retrieval.min_score"] == "file"
    assert src["llm.model"] == "default"


def test_a_nested_section_from_one_environment_variable_is_said_to_come_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENCLAVE_AUTH__LDAP", '{"urls": ["ldaps://dc1.corp.example"], "user_base": "dc=corp"}')
    s = load_settings(None, data_dir=tmp_path / "d")
    assert s.auth.ldap is not None and s.auth.ldap.user_base == "dc=corp"
    src = setting_sources(s)
    assert src["auth.ldap.user_base"] == "env" and src["auth.ldap.mapping.pass_through"] == "env"
    assert src["auth.revalidate_minutes"] == "default"


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "other.yaml"
    cfg.write_text("llm:\n  base_url: http://127.0.0.1:9/v1\n  model: tiny\n")
    monkeypatch.setenv("ENCLAVE_CONFIG", str(cfg))
    assert load_settings().llm.model == "tiny"


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "enclave.yaml"
    cfg.write_text("retrieval:\n  topk: 9\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'retrieval\.topk'"):
        load_settings(cfg)


def test_unknown_section_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "enclave.yaml"
    cfg.write_text("retreival:\n  top_k: 9\n")
    with pytest.raises(ConfigError, match="retreival"):
        load_settings(cfg)


def test_unknown_env_key_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENCLAVE_LLM__MODLE", "x")
    with pytest.raises(ConfigError, match="modle"):
        load_settings()


def test_bad_value_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "enclave.yaml"
    cfg.write_text("retrieval:\n  top_k: many\n")
    with pytest.raises(ConfigError, match=r"retrieval\.top_k"):
        load_settings(cfg)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


# A setting's last name part that says it holds a credential itself (not a file or path to one).
CREDENTIAL_NAME = re.compile(r"(^|_)(key|dsn|password|passwd|token|secret|credentials?)$")


def test_every_setting_that_holds_a_credential_is_marked_secret() -> None:
    names = flatten(Settings().model_dump())
    credentials = {key for key in names if CREDENTIAL_NAME.search(key.rsplit(".", 1)[-1])}
    assert credentials >= {"llm.api_key", "audit.dsn", "audit.owner_dsn"}  # the check sees them
    assert credentials - secret_keys() == set(), "mark these with core.settings.secret(...)"


def test_a_secret_is_masked_when_shown_and_real_where_it_is_used(tmp_path: Path) -> None:
    config = tmp_path / "enclave.yaml"
    config.write_text("audit:\n  dsn: host=db user=enclave password=s3cret\nllm:\n  api_key: sk-live-42\n")
    settings = load_settings(config)
    assert (
        settings.audit.dsn == "host=db user=enclave password=s3cret" and settings.llm.api_key == "sk-live-42"
    )
    shown = shown_settings(settings)
    assert shown["audit.dsn"] == shown["llm.api_key"] == SECRET_SHOWN
    assert shown["audit.owner_dsn"] is None  # unset stays visibly unset
    assert shown_settings(Settings())["llm.api_key"] == "EMPTY"  # the code default
    assert "s3cret" not in repr(settings) and "sk-live-42" not in repr(settings)
