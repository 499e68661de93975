"""A source's settings (core/sources.py), in enclave.yaml's `sources:` as in the sources file:
each kind's location taken apart, the groups required, kind-specific settings kept to their kind,
paths absolute, and every refusal naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from core.settings import load_settings, setting_sources, shown_settings
from core.sources import Endpoint, SourceSettings, guess_kind

CRED = "/etc/enclave/share.cred"


def source(**values: Any) -> SourceSettings:
    return SourceSettings.model_validate({"groups": ["staff"], **values})


@pytest.mark.parametrize(
    ("kind", "location", "endpoint"),
    [
        ("folder", "/srv/docs", Endpoint(None, path="/srv/docs")),
        ("smb", "smb://files.corp/Policies", Endpoint("files.corp", None, "Policies", "")),
        ("smb", "smb://files.corp:4445/Policies/HR/2026", Endpoint("files.corp", 4445, "Policies", "HR/2026")),
        ("smb", "//files.corp/Policies/HR", Endpoint("files.corp", None, "Policies", "HR")),
        ("smb", r"\\files.corp\Policies\HR", Endpoint("files.corp", None, "Policies", "HR")),
        ("webdav", "https://cloud/remote.php/dav/files/x/", Endpoint("cloud", None, path="https://cloud/remote.php/dav/files/x/")),
        ("imap", "imaps://mail.corp", Endpoint("mail.corp", None)),
        ("imap", "imap://mail.corp:1143", Endpoint("mail.corp", 1143)),
    ],
)  # fmt: skip
def test_each_kind_of_location_is_taken_apart(kind: str, location: str, endpoint: Endpoint) -> None:
    extra = {"credentials_file": CRED} if kind in ("smb", "imap") else {}
    cfg = source(kind=kind, location=location, **extra)
    assert cfg.endpoint == endpoint
    assert guess_kind(location) == kind


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"kind": "folder", "location": "docs"}, "absolute path"),
        ({"kind": "folder", "location": "smb://x/y"}, "a folder source takes a local path"),
        ({"kind": "smb", "location": "smb://files.corp", "credentials_file": CRED}, "smb://server/share"),
        ({"kind": "smb", "location": "smb://files.corp/share"}, "needs a credentials_file"),
        ({"kind": "webdav", "location": "ftp://x/"}, "http(s) URL"),
        (
            {"kind": "webdav", "location": "https://bob:hunter2@cloud/dav/"},
            "put them in the credentials_file",
        ),
        ({"kind": "imap", "location": "imaps://m/INBOX", "credentials_file": CRED}, "name its folders"),
        ({"kind": "imap", "location": "imaps://m:99999", "credentials_file": CRED}, "port"),
        ({"kind": "nfs", "location": "/x"}, "kind"),
        ({"kind": "folder", "location": "/x", "groups": []}, "give the groups"),
        ({"kind": "folder", "location": "/x", "groups": "from-source, hr"}, "so it goes alone"),
        (
            {"kind": "webdav", "location": "https://c/dav/", "groups": "from-source"},
            "a webdav source gives no permissions to read",
        ),
        ({"kind": "folder", "location": "/x", "groups": "from-source", "acl": "/a.yaml"}, "choose one"),
        ({"kind": "folder", "location": "/x", "groups": "hr", "group_map": "/m.yaml"}, "not of fixed groups"),
        (
            {"kind": "folder", "location": "/x", "groups": "from-source", "group_map": "m.yaml"},
            "absolute path",
        ),
        (
            {"kind": "folder", "location": "/x", "groups": "from-source", "everyone_group": "a,b"},
            "not a group",
        ),
        ({"kind": "folder", "location": "/x", "encrypt": True}, "encrypt is a setting of smb sources"),
        ({"kind": "folder", "location": "/x", "credentials_file": CRED}, "credentials_file is a setting of"),
        ({"kind": "smb", "location": "//f/s", "credentials_file": "f.cred"}, "must be an absolute path"),
        ({"kind": "folder", "location": "/x", "acl": "acl.yaml"}, "must be an absolute path"),
        ({"kind": "folder", "location": "/x", "schedule": "every day"}, "neither an interval"),
        ({"kind": "folder", "location": "/x", "min_ratio": 2}, "less than or equal to 1"),
        ({"kind": "folder", "location": "/x", "colour": "blue"}, "Extra inputs"),
        ({"kind": "imap", "location": "imaps://m", "credentials_file": CRED, "security": "none"}, "imaps://"),
    ],
)
def test_bad_settings_are_refused_naming_them(values: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        source(**values)
    assert says in str(caught.value)
    assert "hunter2" not in " ".join(str(e["msg"]) for e in caught.value.errors())


def test_groups_schedule_and_imap_security_are_normalised() -> None:
    cfg = source(
        kind="imap",
        location="imap://m",
        credentials_file=CRED,
        groups="staff, hr,staff",
        schedule=" 0 2  * * * ",
    )
    assert cfg.groups == ["hr", "staff"] and cfg.schedule == "0 2 * * *" and cfg.imap_security == "starttls"
    assert source(kind="folder", location="/x", schedule="manual").schedule is None
    assert source(kind="imap", location="imaps://m", credentials_file=CRED).imap_security == "ssl"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_sources_in_enclave_yaml_load_and_config_show_says_where_from(tmp_path: Path) -> None:
    config = write(
        tmp_path / "enclave.yaml",
        "sources:\n  policies:\n    kind: smb\n    location: //files/Policies\n"
        f"    credentials_file: {CRED}\n    groups: [hr]\n    schedule: 1h\n",
    )
    settings = load_settings(config)
    assert settings.sources["policies"].endpoint.share == "Policies"
    shown = shown_settings(settings)
    assert shown["sources.policies.credentials_file"] == CRED  # a path, never a secret
    where = setting_sources(settings, config)
    assert where["sources.policies.schedule"] == "file" and where["sources.policies.min_ratio"] == "default"


def test_a_bad_source_in_enclave_yaml_names_its_key(tmp_path: Path) -> None:
    config = write(
        tmp_path / "enclave.yaml",
        "sources:\n  Policies:\n    kind: folder\n    location: /x\n    groups: [a]\n",
    )
    with pytest.raises(ConfigError, match="source name 'Policies'"):
        load_settings(config)
    config = write(
        tmp_path / "enclave.yaml", "sources:\n  docs:\n    kind: folder\n    location: /x\n    group: [a]\n"
    )
    with pytest.raises(ConfigError, match=r"unknown setting 'sources\.docs\.group'"):
        load_settings(config)


def test_groups_from_source_with_a_group_map() -> None:
    cfg = source(
        kind="smb",
        location="smb://files/share",
        credentials_file=CRED,
        groups="from-source",
        group_map="/etc/enclave/sids.yaml",
        everyone_group=" staff ",
    )
    assert cfg.groups_from_source and cfg.groups == ["from-source"]
    assert str(cfg.group_map) == "/etc/enclave/sids.yaml" and cfg.everyone_group == "staff"
    assert not source(kind="folder", location="/x").groups_from_source
