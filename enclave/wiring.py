"""Build Enclave's objects from settings. The one place that knows which class goes where.

Heavy libraries are imported inside the factories, so that `enclave --help` stays fast and the
offline switches are set before any of them loads.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from core.offline import host_of, install_guard
from core.settings import Settings
from core.users import UserStore

if TYPE_CHECKING:
    from assistant.budget import ContextBudget
    from assistant.llm import VllmChatModel
    from assistant.service import Assistant
    from audit.log import AuditLog
    from core.sources import SourceSettings
    from ingest.originals import OriginalFiles
    from ingest.pipeline import IngestPipeline
    from ingest.sources import Connector
    from ingest.sources.permissions import SidResolver
    from vectorstore.embedding import Embedder
    from vectorstore.index import SearchIndex
    from vectorstore.rerank import CrossEncoderReranker

log = logging.getLogger(__name__)


def allowed_hosts(settings: Settings) -> list[str]:
    hosts = list(settings.network.allowed_hosts)
    llm_host = host_of(settings.llm.base_url)
    if llm_host:
        hosts.append(llm_host)
    if settings.store.mode == "http":
        hosts.append(settings.store.host)
    from enclave.health import identity_endpoints

    # The directory and the OIDC provider: sign-in and the checks of who is in which group.
    hosts.extend(h for h in identity_endpoints(settings).values() if h)
    return hosts


def guard(settings: Settings) -> None:
    install_guard(settings.network.guard, allowed_hosts(settings))


def build_embedder(settings: Settings) -> Embedder:
    from vectorstore.embedding import resolve_backend

    e = settings.embedding
    backend = resolve_backend(e.backend)
    if backend != e.backend:
        log.info("embedding backend %s: %s on this CPU", e.backend, backend)
    match backend:
        case "onnx-int8":
            from vectorstore.onnx_embedding import OnnxEmbedder

            return OnnxEmbedder(e.model_path, settings.models_cache, e.threads)
        case _:
            from vectorstore.embedding import SentenceTransformerEmbedder

            return SentenceTransformerEmbedder(
                e.model_path, e.batch_size, e.device, e.threads, bf16=backend == "torch-bf16"
            )


def build_store(settings: Settings) -> SearchIndex:
    """Chroma (embedded or server) with the lexical index beside it."""
    from vectorstore.chroma import ChromaStore
    from vectorstore.index import SearchIndex
    from vectorstore.lexical import LexicalIndex

    s = settings.store
    if s.mode == "http":
        dense = ChromaStore.http(s.host, s.port, s.collection_prefix)
    else:
        dense = ChromaStore.embedded(settings.chroma_path, s.collection_prefix)
    return SearchIndex(dense, LexicalIndex(settings.lexical_path))


def build_reranker(settings: Settings) -> CrossEncoderReranker | None:
    r = settings.retrieval
    if r.reranker_path is None:
        return None
    from vectorstore.rerank import CrossEncoderReranker

    return CrossEncoderReranker(r.reranker_path, r.rerank_depth, device=settings.embedding.device)


def build_audit(settings: Settings) -> AuditLog:
    """The audit log of `audit.backend`: the SQLite file, or the PostgreSQL database as the app's
    role (`audit.dsn`/`audit.dsn_file`)."""
    return _audit_log(settings, owner=False)


def build_audit_owner(settings: Settings) -> AuditLog:
    """The audit log as the role that owns its tables, for `enclave audit migrate` and purge: on
    PostgreSQL `audit.owner_dsn`/`audit.owner_dsn_file` (else the app's DSN, which then owns the
    tables itself); the SQLite file is owned by whoever can write it."""
    audit = settings.audit
    owner = audit.backend == "postgres" and (audit.owner_dsn is not None or audit.owner_dsn_file is not None)
    return _audit_log(settings, owner=owner)


def audit_app_role(settings: Settings) -> str | None:
    """The PostgreSQL role the app connects as (the user of its DSN); None for SQLite, or when
    the DSN names no user (libpq then uses the login name)."""
    if settings.audit.backend != "postgres":
        return None
    from psycopg import conninfo

    dsn, _ = _dsn(settings, owner=False)
    user = conninfo.conninfo_to_dict(dsn).get("user")
    return str(user) if user else None


def check_retention(settings: Settings, audit: AuditLog) -> None:
    """ConfigError when `audit.retention_days` is 0 while the log holds records: the minimum
    retention protects them from a purge, and may not be switched off on a log in use."""
    from core.errors import ConfigError

    if settings.audit.retention_days == 0 and audit.head()[0] > 0:
        raise ConfigError(
            f"audit.retention_days is 0, but the audit log {audit.label} holds records: set it to "
            "the minimum number of days records must be kept (at least 1) before purging or serving"
        )


def _dsn(settings: Settings, owner: bool) -> tuple[str, str]:
    """The PostgreSQL DSN, and the setting it came from (named in messages)."""
    from core.errors import ConfigError

    audit = settings.audit
    prefix = "audit.owner_dsn" if owner else "audit.dsn"
    text, file = (audit.owner_dsn, audit.owner_dsn_file) if owner else (audit.dsn, audit.dsn_file)
    if (text is None) == (file is None):
        raise ConfigError(
            f"audit.backend is postgres: set exactly one of {prefix} and {prefix}_file "
            "(the PostgreSQL connection)"
        )
    setting = prefix if text is not None else f"{prefix}_file ({file})"
    if file is not None:
        try:
            dsn = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{prefix}_file {file} cannot be read: {exc.strerror or exc}") from exc
    else:
        dsn = str(text).strip()
    if not dsn:
        raise ConfigError(f"{setting} is empty: it must hold the PostgreSQL connection")
    return dsn, setting


def _audit_log(settings: Settings, owner: bool) -> AuditLog:
    from core.errors import ConfigError

    audit = settings.audit
    match audit.backend:
        case "sqlite":
            from audit.log import AuditLog

            return AuditLog(
                settings.audit_path, retention_days=audit.retention_days, anchor_file=audit.anchor_file
            )
        case "postgres":
            dsn, setting = _dsn(settings, owner)
            try:
                from audit.postgres import PostgresAuditLog
            except ImportError as exc:
                raise ConfigError(
                    f"audit.backend is postgres but the PostgreSQL driver cannot be loaded ({exc}); "
                    "install the pinned psycopg[binary] from requirements.lock, or set audit.backend "
                    "to sqlite"
                ) from exc
            return PostgresAuditLog(
                dsn, setting=setting, retention_days=audit.retention_days, anchor_file=audit.anchor_file
            )


def build_users(settings: Settings) -> UserStore:
    return UserStore(settings.users_path)


def build_originals(settings: Settings) -> OriginalFiles:
    """Where indexed documents' original files lie, for the web UI's source links."""
    from ingest.originals import OriginalFiles

    return OriginalFiles(settings.manifest_path)


def build_llm(settings: Settings) -> VllmChatModel | None:
    from core.errors import ConfigError

    llm = settings.llm
    if not llm.base_url:
        return None
    if not llm.model:
        raise ConfigError("llm.base_url is set but llm.model is not: set the served model's name")
    from assistant.llm import VllmChatModel

    return VllmChatModel(llm.base_url, llm.model, llm.api_key, llm.timeout_s, llm.max_tokens, llm.temperature)


def build_context_budget(settings: Settings) -> ContextBudget:
    """Counts prompts with the served model's tokenizer: its files when configured, else vLLM's."""
    from assistant.budget import ContextBudget
    from assistant.tokens import TokenizerFileCounter, VllmTokenizeCounter, served_context_window

    llm = settings.llm
    assert llm.base_url and llm.model, "build_llm checks both first"
    base_url, model = llm.base_url, llm.model
    counter = (
        TokenizerFileCounter(llm.tokenizer_path)
        if llm.tokenizer_path
        else VllmTokenizeCounter(base_url, model, llm.api_key, llm.timeout_s)
    )
    return ContextBudget(
        counter,
        llm.max_tokens,
        llm.context_window,
        lambda: served_context_window(base_url, model, llm.api_key, llm.timeout_s),
        f"vLLM {base_url}/models (max_model_len)",
    )


def build_assistant(
    settings: Settings,
    embedder: Embedder | None = None,
    store: SearchIndex | None = None,
) -> Assistant:
    from assistant.extractive import ExtractiveAnswerer
    from assistant.focus import DocumentPass
    from assistant.followup import QueryRewriter
    from assistant.retrieval import Retriever
    from assistant.service import Assistant
    from assistant.support import SupportChecker
    from enclave.sources import SourceLocations

    embedder = embedder or build_embedder(settings)
    r = settings.retrieval
    retriever = Retriever(
        store or build_store(settings),
        embedder,
        r.top_k,
        r.min_score,
        r.mode,
        r.candidates,
        reranker=build_reranker(settings),
        dense_weight=r.dense_weight,
        document_pass=DocumentPass(extra=r.document_pass) if r.document_pass else None,
    )
    llm = build_llm(settings)
    return Assistant(
        retriever,
        build_audit(settings),
        llm,
        ExtractiveAnswerer(embedder),
        org_name=settings.ui.org_name,
        budget=build_context_budget(settings) if llm else None,
        rewriter=QueryRewriter(
            llm if settings.llm.query_rewrite == "llm" else None, settings.llm.rewrite_max_tokens
        ),
        support=SupportChecker(embedder),
        max_question_chars=settings.ui.max_question_chars,
        history_turns=settings.llm.history_turns,
        refuse_unanswered=r.refuse_unanswered,
        locate=SourceLocations(settings.sources_dir),
    )


def build_pipeline(
    settings: Settings,
    embedder: Embedder | None = None,
    store: SearchIndex | None = None,
    lock: bool = True,
) -> IngestPipeline:
    """The ingest; with lock False it does not take the data folder's ingest lock itself, for a
    caller that holds it around more than the run (a source's sync: mirror, then ingest)."""
    from ingest.chunking import Chunker, WordPieces
    from ingest.manifest import Manifest
    from ingest.parsing import parse_file
    from ingest.pipeline import IngestPipeline, disk_full_explained

    i = settings.ingest
    with disk_full_explained(settings.data_dir, started=False):  # opening the stores writes too
        store = store or build_store(settings)
        manifest = Manifest(settings.manifest_path)
    return IngestPipeline(
        store=store,
        embedder=embedder or build_embedder(settings),
        manifest=manifest,
        # Chunks are kept within the embedding model's window, counted by its own tokenizer.
        chunker=Chunker(
            i.chunk_chars, i.chunk_overlap, word_pieces=WordPieces.of(settings.embedding.model_path)
        ),
        max_file_bytes=int(i.max_file_mb * 1024 * 1024),
        lock_path=settings.ingest_lock_path if lock else None,
        workers=i.workers,
        parse_timeout_s=i.parse_timeout_s,
        embed_batch=max(settings.embedding.batch_size * 8, 256),
        guard=(settings.network.guard, allowed_hosts(settings)),
        # Tables are cut into groups of whole rows (each with its header) of about a chunk.
        parse=functools.partial(parse_file, table_chars=i.chunk_chars),
    )


def build_connector(source: SourceSettings, *, hard_links: bool = False) -> Connector:
    """The connector of a source's kind; its client library is imported only then. `hard_links`:
    a folder whose files are only ever replaced by a rename (an upload source), which the mirror
    may link instead of copying."""
    where = source.endpoint
    match source.kind:
        case "folder":
            from pathlib import Path

            from ingest.sources import LocalConnector

            return LocalConnector(
                Path(where.path), permissions=source.groups_from_source, hard_links=hard_links
            )
        case "smb":
            from ingest.sources.smb import SmbConnector

            assert source.credentials_file is not None  # SourceSettings requires it
            assert where.host is not None
            return SmbConnector(
                where.host,
                where.share,
                where.folder,
                credentials_file=source.credentials_file,
                port=where.port or 445,
                encrypt=source.encrypt,
                permissions=source.groups_from_source,
                **({"timeout_s": source.timeout_s} if source.timeout_s else {}),
            )
        case "webdav":
            from ingest.sources.webdav import WebDavConnector

            return WebDavConnector(
                where.path,
                credentials_file=source.credentials_file,
                ca_file=source.ca_file,
                **({"timeout_s": source.timeout_s} if source.timeout_s else {}),
            )
        case "imap":
            from ingest.sources.imap import ImapConnector

            assert source.credentials_file is not None
            assert where.host is not None
            return ImapConnector(
                where.host,
                credentials_file=source.credentials_file,
                port=where.port,
                security=source.imap_security,
                folders=tuple(source.folders) or None,
                ca_file=source.ca_file,
                **({"timeout_s": source.timeout_s} if source.timeout_s else {}),
            )
    raise AssertionError(f"no connector for kind {source.kind!r}")


def build_sid_resolver(settings: Settings, source: SourceSettings) -> SidResolver | None:
    """For an SMB source whose SIDs go through the directory (sid_groups directory or both): a
    SID's Enclave groups as ui.directory.LdapDirectory finds them, each SID asked once (build one
    per sync, so a change in the directory counts at the next). ConfigError when auth.ldap is
    not set; the resolver raises SourceUnavailable when the directory cannot answer, so the sync
    fails and no one's access changes."""
    from core.errors import ConfigError, SourceUnavailable

    if not source.sids_from_directory:
        return None
    if settings.auth.ldap is None:
        raise ConfigError(
            f"sid_groups {source.sid_groups}: SIDs go through the directory, but auth.ldap is not set "
            "(configure the directory, or use sid_groups map-file with a group_map file)"
        )
    from core.identity import DirectoryUnavailable
    from ui.directory import LdapDirectory

    directory = LdapDirectory(settings.auth.ldap)
    known: dict[str, tuple[str, ...] | None] = {}

    def resolve(sid: str) -> tuple[str, ...] | None:
        if sid not in known:
            try:
                known[sid] = directory.groups_of_sid(sid)
            except DirectoryUnavailable as exc:
                raise SourceUnavailable(
                    f"{source.location}: the directory cannot say whose SID {sid} is ({exc}); the sync "
                    "stopped so that no one's access changes"
                ) from exc
        return known[sid]

    return resolve
