"""Build Enclave's objects from settings. The one place that knows which class goes where.

Heavy libraries are imported inside the factories, so that `enclave --help` stays fast and the
offline switches are set before any of them loads.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from core.offline import host_of, install_guard
from core.settings import Settings
from core.users import UserStore

if TYPE_CHECKING:
    from assistant.llm import VllmChatModel
    from assistant.service import Assistant
    from audit.log import AuditLog
    from ingest.pipeline import IngestPipeline
    from vectorstore.embedding import Embedder
    from vectorstore.index import SearchIndex
    from vectorstore.rerank import CrossEncoderReranker


def allowed_hosts(settings: Settings) -> list[str]:
    hosts = list(settings.network.allowed_hosts)
    llm_host = host_of(settings.llm.base_url)
    if llm_host:
        hosts.append(llm_host)
    if settings.store.mode == "http":
        hosts.append(settings.store.host)
    return hosts


def guard(settings: Settings) -> None:
    install_guard(settings.network.guard, allowed_hosts(settings))


def build_embedder(settings: Settings) -> Embedder:
    e = settings.embedding
    match e.backend:
        case "onnx-int8":
            from vectorstore.onnx_embedding import OnnxEmbedder

            return OnnxEmbedder(e.model_path, settings.models_cache, e.threads)
        case _:
            from vectorstore.embedding import SentenceTransformerEmbedder

            return SentenceTransformerEmbedder(
                e.model_path, e.batch_size, e.device, e.threads, bf16=e.backend == "torch-bf16"
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
    from audit.log import AuditLog

    return AuditLog(settings.audit_path)


def build_users(settings: Settings) -> UserStore:
    return UserStore(settings.users_path)


def build_llm(settings: Settings) -> VllmChatModel | None:
    from core.errors import ConfigError

    llm = settings.llm
    if not llm.base_url:
        return None
    if not llm.model:
        raise ConfigError("llm.base_url is set but llm.model is not: set the served model's name")
    from assistant.llm import VllmChatModel

    return VllmChatModel(llm.base_url, llm.model, llm.api_key, llm.timeout_s, llm.max_tokens, llm.temperature)


def build_assistant(
    settings: Settings,
    embedder: Embedder | None = None,
    store: SearchIndex | None = None,
) -> Assistant:
    from assistant.extractive import ExtractiveAnswerer
    from assistant.retrieval import Retriever
    from assistant.service import Assistant

    embedder = embedder or build_embedder(settings)
    r = settings.retrieval
    retriever = Retriever(
        store or build_store(settings), embedder, r.top_k, r.min_score, r.mode, r.candidates,
        reranker=build_reranker(settings),
    )
    return Assistant(
        retriever,
        build_audit(settings),
        build_llm(settings),
        ExtractiveAnswerer(embedder),
        org_name=settings.ui.org_name,
    )


def build_pipeline(
    settings: Settings,
    embedder: Embedder | None = None,
    store: SearchIndex | None = None,
) -> IngestPipeline:
    from ingest.chunking import Chunker
    from ingest.manifest import Manifest
    from ingest.parsing import parse_file
    from ingest.pipeline import IngestPipeline

    i = settings.ingest
    return IngestPipeline(
        store=store or build_store(settings),
        embedder=embedder or build_embedder(settings),
        manifest=Manifest(settings.manifest_path),
        chunker=Chunker(i.chunk_chars, i.chunk_overlap),
        max_file_bytes=int(i.max_file_mb * 1024 * 1024),
        lock_path=settings.data_dir / "ingest.lock",
        workers=i.workers,
        parse_timeout_s=i.parse_timeout_s,
        embed_batch=max(settings.embedding.batch_size * 8, 256),
        guard=(settings.network.guard, allowed_hosts(settings)),
        # Tables are cut into groups of whole rows (each with its header) of about a chunk.
        parse=functools.partial(parse_file, table_chars=i.chunk_chars),
    )
