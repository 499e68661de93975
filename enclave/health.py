"""Health checks of an Enclave installation, and the overview the admin page shows.

Each check returns a `CheckResult` (core/health.py) and never raises: a check that breaks is a
failed check naming what broke. `run_checks()` runs them all; `enclave doctor` prints them and
the admin page shows them. Nothing here writes to the stores: the audit log is tested for
writability without a record being added, and a data folder without a store is not given one.

Checks: the embedding model folder and backend (the onnx-int8 export made yet; a warning for
documents embedded by another model), Chroma (reachable, its chunk count), the lexical index (in
step with Chroma), the audit log (writable, chain intact), the LLM endpoint (answers, serves the
configured model; not configured is fine: answers are then extractive), free disk space under
the data folder, the telemetry switches of core/offline.py, and the network: every service a
setting points at (LLM, Chroma server, PostgreSQL audit log) lies on the premises, and the
connect guard is strict.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import shutil
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import EnclaveError
from core.health import AdminStatus, CheckResult, GroupCount
from core.offline import TELEMETRY_ENV, guard_mode, host_of
from core.settings import Settings

if TYPE_CHECKING:
    from vectorstore.index import SearchIndex

log = logging.getLogger(__name__)

LLM_TIMEOUT_S = 3.0  # a health check must not hang on an endpoint that accepts and never answers
MIN_FREE_BYTES = 1 << 30  # below 1 GiB an ingest or the audit log may soon fail
MIN_FREE_FRACTION = 0.02
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# The switches that keep libraries from phoning home (the rest of TELEMETRY_ENV only keeps them
# from downloading or chattering): these must hold their core/offline.py values.
TELEMETRY_KEYS = (
    "GRADIO_ANALYTICS_ENABLED",
    "ANONYMIZED_TELEMETRY",
    "ORT_DISABLE_TELEMETRY",
    "HF_HUB_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "TRANSFORMERS_OFFLINE",
    "DO_NOT_TRACK",
    "SCARF_NO_ANALYTICS",
)


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except Exception as exc:  # a broken check is a failed check, never a crashed page
        log.warning("health check %s failed", name, exc_info=True)
        return CheckResult(name, False, f"the check itself failed: {type(exc).__name__}: {exc}")


# -- the checks ----------------------------------------------------------------------------------


def check_embedding_model(settings: Settings, *, hashes: bool = False) -> CheckResult:
    """The embedding model folder holds a config, a tokenizer and weights (sha256 of each file
    with `hashes`), and the configured backend can be built (the model is not loaded); for
    onnx-int8, whether its one-off export is made yet. Warns when the index holds documents
    embedded by another model or backend: the next ingest embeds them again."""
    from core.errors import ConfigError
    from vectorstore.embedding import resolve_backend

    name = "embedding model"
    configured = settings.embedding.model_path
    if configured is None:
        from vectorstore.embedding import default_model_path

        try:
            folder = default_model_path()
        except ConfigError as exc:
            return CheckResult(name, False, str(exc))
    else:
        folder = Path(configured)
    model_id = folder.name if folder.name != "model" else folder.parent.name
    figures: dict[str, Any] = {
        "folder": str(folder),
        "model_id": model_id,
        "backend": settings.embedding.backend,
        "backend_used": resolve_backend(settings.embedding.backend),
    }
    if not folder.is_dir():
        return CheckResult(
            name, False, f"embedding model folder {folder} does not exist: set embedding.model_path", figures
        )
    missing = [f for f in ("config.json", "tokenizer.json") if not (folder / f).is_file()]
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        return CheckResult(
            name,
            False,
            f"embedding model folder {folder} lacks {', '.join(missing)}: "
            "point embedding.model_path at a complete sentence-transformers model folder",
            figures,
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    figures["files"] = len(files)
    figures["bytes"] = sum(p.stat().st_size for p in files)
    if hashes:
        figures["sha256"] = {str(p.relative_to(folder)): _sha256(p) for p in files}
    from enclave.wiring import build_embedder

    try:
        embedder = build_embedder(settings)  # neither backend loads its model before first use
    except ConfigError as exc:
        return CheckResult(name, False, str(exc), figures)
    detail = f"{model_id} in {folder}, backend {settings.embedding.backend}"
    if figures["backend_used"] != settings.embedding.backend:
        detail += f" ({figures['backend_used']} on this CPU)"
    figures["embedder"] = embedder.model_id
    onnx_model: Path | None = getattr(embedder, "onnx_path", None)
    if onnx_model is not None:
        figures["onnx_model"] = str(onnx_model)
        figures["onnx_exported"] = onnx_model.is_file()
        if not figures["onnx_exported"]:
            detail += (
                f"; the int8 copy is not made yet: the first ingest or web UI start exports it to "
                f"{onnx_model.parent} (once, about 5-15 s)"
            )
    others = {m: n for m, n in _embed_models(settings).items() if m != embedder.model_id}
    stale = figures["other_model_documents"] = sum(others.values())
    if stale:
        models = ", ".join(f"{n} by {m}" for m, n in sorted(others.items()))
        return CheckResult(
            name,
            True,
            f"{detail}; warning: {stale} indexed document{'s' if stale != 1 else ''} embedded by "
            f"another model ({models}), not {embedder.model_id}: `enclave ingest` of their folders "
            "(or `enclave docs reindex`) embeds them again; until then they are searched with "
            "vectors of another model",
            figures,
            warn=True,
        )
    return CheckResult(name, True, detail, figures)


def _embed_models(settings: Settings) -> dict[str, int]:
    """Documents per embedding model in the manifest; none without one (nothing is created)."""
    if not settings.manifest_path.exists():
        return {}
    from ingest.manifest import Manifest

    manifest = Manifest(settings.manifest_path)
    try:
        return manifest.embed_models()
    finally:
        manifest.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _has_store(settings: Settings) -> bool:
    return settings.store.mode == "http" or settings.chroma_path.exists()


def check_chroma(settings: Settings, store: SearchIndex | None = None) -> CheckResult:
    """Chroma answers and counts its chunks (an embedded store not yet made is reported, not made)."""
    name = "chroma"
    s = settings.store
    where = f"http://{s.host}:{s.port}" if s.mode == "http" else str(settings.chroma_path)
    figures: dict[str, Any] = {"mode": s.mode, "location": where}
    if store is None and not _has_store(settings):
        figures.update(chunks=0, access_classes=0)
        return CheckResult(name, True, f"no store at {where} yet: the first ingest creates it", figures)
    from vectorstore.chroma import StoreInUse

    try:
        dense = store.dense if store is not None else _dense(settings)
        classes = dense.access_classes()
        figures.update(chunks=dense.count(), access_classes=len(classes))
    except StoreInUse as exc:
        # The running web UI holds the embedded store: not a fault, and not to be opened here.
        figures.update(in_use_by=exc.owner)
        owner = exc.owner
        return CheckResult(
            name,
            True,
            f"embedded store {where} is held by `{owner.get('role', '?')}` (pid {owner.get('pid', '?')}); "
            "not opened from here (embedded Chroma is for one process): the web UI's admin page (/admin) shows it",
            figures,
        )
    except Exception as exc:
        return CheckResult(name, False, f"Chroma at {where} did not answer: {exc}", figures)
    return CheckResult(
        name, True, f"{figures['chunks']} chunks in {len(classes)} access classes at {where}", figures
    )


def _dense(settings: Settings) -> Any:
    from vectorstore.chroma import ChromaStore

    s = settings.store
    if s.mode == "http":
        return ChromaStore.http(s.host, s.port, s.collection_prefix)
    return ChromaStore.embedded(settings.chroma_path, s.collection_prefix)


def check_lexical(settings: Settings, store: SearchIndex | None = None) -> CheckResult:
    """The lexical (BM25) index holds as many chunks as Chroma, document by document."""
    from vectorstore.chroma import StoreInUse

    name = "lexical index"
    path = settings.lexical_path
    figures: dict[str, Any] = {"file": str(path)}
    if store is None and not _has_store(settings):
        figures.update(chunks=0, chroma_chunks=0)
        return CheckResult(name, True, "no store yet: the first ingest creates both indexes", figures)
    try:
        if store is None:
            if not path.exists():
                dense_count = _dense(settings).count()
                figures.update(chunks=0, chroma_chunks=dense_count)
                if dense_count:
                    return CheckResult(
                        name,
                        False,
                        f"lexical index {path} is missing while Chroma holds {dense_count} chunks: "
                        "run `enclave docs reindex --lexical`",
                        figures,
                    )
                return CheckResult(name, True, "empty, like Chroma", figures)
            from vectorstore.lexical import LexicalIndex

            lexical = LexicalIndex(path)
            try:
                lexical_docs, dense_docs = lexical.document_ids(), _dense(settings).document_ids()
            finally:
                lexical.close()
        else:
            lexical_docs, dense_docs = store.lexical.document_ids(), store.dense.document_ids()
    except StoreInUse as exc:
        figures.update(in_use_by=exc.owner)
        return CheckResult(
            name, True, "not compared: the web UI holds the embedded Chroma store (see chroma)", figures
        )
    except Exception as exc:
        return CheckResult(
            name, False, f"lexical index {path} could not be compared with Chroma: {exc}", figures
        )
    figures.update(chunks=sum(lexical_docs.values()), chroma_chunks=sum(dense_docs.values()))
    differing = sorted(
        d for d in lexical_docs.keys() | dense_docs.keys() if lexical_docs.get(d) != dense_docs.get(d)
    )
    figures["documents_out_of_step"] = len(differing)
    if differing:
        return CheckResult(
            name,
            False,
            f"lexical index holds {figures['chunks']} chunks, Chroma {figures['chroma_chunks']}; "
            f"{len(differing)} documents differ (e.g. {differing[0]}): run `enclave docs reindex --lexical`",
            figures,
        )
    return CheckResult(name, True, f"in step with Chroma: {figures['chunks']} chunks", figures)


def check_audit_log(settings: Settings) -> CheckResult:
    """The audit log (or, before the first record, its folder) is writable and its chain verifies."""
    from audit.log import AuditLog

    name = "audit log"
    if settings.audit.backend != "sqlite":
        return _check_audit_server(settings)
    path = settings.audit_path
    figures: dict[str, Any] = {"backend": "sqlite", "file": str(path)}
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the first append creates the missing folders under it
    if not folder.is_dir():
        return CheckResult(
            name,
            False,
            f"audit log {path} cannot be created: {folder} is not a folder; set audit.path",
            figures,
        )
    unwritable = [str(p) for p in (path, folder) if p.exists() and not os.access(p, os.W_OK)]
    if unwritable:
        return CheckResult(
            name,
            False,
            f"audit log {path}: {' and '.join(unwritable)} not writable; answers cannot be logged, "
            "so none would be given. Fix the permissions or set audit.path",
            figures,
        )
    result = AuditLog(path).verify()
    figures.update(records=result.checked, purged_through=result.purged_through)
    if not result.ok:
        return CheckResult(name, False, _unverified(f"audit log {path}", result), figures)
    return CheckResult(name, True, f"writable; chain intact over {result.checked} records", figures)


def _unverified(what: str, result: Any) -> str:
    if result.first_bad_id is None:  # the log could not be read at all
        return f"{what} could not be verified: {result.reason}"
    return f"{what} chain BROKEN at record {result.first_bad_id}: {result.reason}"


def _check_audit_server(settings: Settings) -> CheckResult:
    """An audit log in a database server: it answers and its chain verifies. Writability is
    what its grants decide, and is not tested (that would take writing a record)."""
    from enclave import wiring

    name = "audit log"
    figures: dict[str, Any] = {"backend": settings.audit.backend}  # never the DSN: it may hold a password
    try:
        result = wiring.build_audit(settings).verify()
    except Exception as exc:
        return CheckResult(
            name, False, f"the {settings.audit.backend} audit log did not answer: {exc}", figures
        )
    figures.update(records=result.checked, purged_through=result.purged_through)
    if not result.ok:
        return CheckResult(
            name, False, _unverified(f"the {settings.audit.backend} audit log", result), figures
        )
    return CheckResult(
        name, True, f"{settings.audit.backend}; chain intact over {result.checked} records", figures
    )


def check_llm(settings: Settings, timeout_s: float = LLM_TIMEOUT_S) -> CheckResult:
    """GET {llm.base_url}/models answers and lists llm.model; no LLM configured is fine."""
    import httpx

    name = "llm"
    llm = settings.llm
    if not llm.base_url:
        return CheckResult(
            name,
            True,
            "not configured: answers are extractive (set llm.base_url and llm.model)",
            {"configured": False},
        )
    url = f"{llm.base_url.rstrip('/')}/models"
    figures: dict[str, Any] = {"configured": True, "url": url, "model": llm.model, "reachable": False}
    if not llm.model:
        return CheckResult(
            name, False, "llm.base_url is set but llm.model is not: set the served model's name", figures
        )
    headers = {"Authorization": f"Bearer {llm.api_key}"} if llm.api_key and llm.api_key != "EMPTY" else {}
    try:
        with httpx.Client(timeout=timeout_s, headers=headers, trust_env=False) as client:
            response = client.get(url)
    except httpx.TimeoutException:
        return CheckResult(
            name, False, f"the language model at {url} did not answer within {timeout_s:g} s", figures
        )
    except (httpx.HTTPError, OSError) as exc:
        return CheckResult(name, False, f"the language model at {url} is unreachable: {exc}", figures)
    figures["reachable"] = True
    if response.status_code != 200:
        return CheckResult(
            name,
            False,
            f"the language model at {url} answered HTTP {response.status_code}: {response.text[:200]}",
            figures,
        )
    try:
        entries = response.json().get("data") or []
        served = [str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e]
    except (ValueError, AttributeError, TypeError):
        return CheckResult(
            name, False, f"{url} did not answer with a model list: is it OpenAI-compatible?", figures
        )
    figures["served"] = served
    if llm.model not in served:
        return CheckResult(
            name,
            False,
            f"{url} serves {', '.join(served) or 'no model'}, not {llm.model!r}: check llm.model",
            figures,
        )
    window = next(
        (e.get("max_model_len") for e in entries if isinstance(e, dict) and e.get("id") == llm.model), None
    )
    if isinstance(window, int):
        figures["max_model_len"] = window
    return CheckResult(name, True, f"{llm.model} served at {llm.base_url}", figures)


def check_disk(
    settings: Settings, min_free_bytes: int = MIN_FREE_BYTES, min_free_fraction: float = MIN_FREE_FRACTION
) -> CheckResult:
    """Free space on the filesystem of the data folder."""
    name = "disk space"
    folder = Path(settings.data_dir).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    figures = {"folder": str(folder), "free_bytes": usage.free, "total_bytes": usage.total}
    free = f"{usage.free / (1 << 30):.1f} GiB free of {usage.total / (1 << 30):.1f} GiB"
    if usage.free < min_free_bytes or usage.free < min_free_fraction * usage.total:
        limit = f"{min_free_bytes / (1 << 30):.1f} GiB and {min_free_fraction:.0%}"
        return CheckResult(name, False, f"{free} under {folder} (below {limit}): free some space", figures)
    return CheckResult(name, True, f"{free} under {folder}", figures)


def _flag(value: str | None) -> bool | None:
    """An on/off switch as libraries read it ("1", "True", "yes"...); None when unset or unclear.
    Gradio, for one, sets HF_HUB_DISABLE_TELEMETRY to "True" where core/offline.py sets "1"."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return None


def check_telemetry(environ: Any = None) -> CheckResult:
    """The telemetry switches hold the values core/offline.py sets, and the connect guard is on."""
    env = os.environ if environ is None else environ
    wrong = {k: env.get(k) for k in TELEMETRY_KEYS if _flag(env.get(k)) != _flag(TELEMETRY_ENV[k])}
    figures: dict[str, Any] = {"guard": guard_mode(), "wrong": wrong}
    if wrong:
        listed = ", ".join(
            f"{k}={v if v is not None else '(unset)'} (want {TELEMETRY_ENV[k]})" for k, v in wrong.items()
        )
        return CheckResult(
            "telemetry",
            False,
            f"telemetry switches not off: {listed}. Start Enclave with the `enclave` command, which "
            "sets them before any library loads",
            figures,
        )
    return CheckResult(
        "telemetry", True, f"off ({len(TELEMETRY_KEYS)} switches); connect guard {guard_mode()}", figures
    )


def _dsn_host(settings: Settings) -> str | None:
    """The host of the PostgreSQL audit DSN (URI or key=value form), or None (SQLite, a Unix
    socket, or no host given: all local)."""
    a = settings.audit
    if a.backend != "postgres":
        return None
    dsn = a.dsn
    if dsn is None and a.dsn_file is not None:
        try:
            dsn = Path(a.dsn_file).read_text(encoding="utf-8").strip()
        except OSError:
            return None  # the audit check names an unreadable DSN file
    if not dsn:
        return None
    if "://" in dsn:
        host = host_of(dsn)
    else:
        found = re.search(r"(?:^|\s)(?:host|hostaddr)\s*=\s*'?([^'\s,]+)", dsn)
        host = found.group(1) if found else None
    return None if not host or host.startswith("/") else host


def _on_premises(host: str, allowed: set[str]) -> tuple[bool, str]:
    """Whether `host` is loopback, a private or link-local address (by itself or by what it
    resolves to), or named in network.allowed_hosts; with the reason."""
    if host in allowed or host == "localhost":
        return True, "allowed"
    try:
        addresses = {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        try:
            addresses = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False, "does not resolve and is not in network.allowed_hosts"
    public = [str(a) for a in addresses if not (a.is_loopback or a.is_private or a.is_link_local)]
    if public:
        return False, f"resolves to public address {', '.join(sorted(public))}"
    return True, "private address"


def identity_endpoints(settings: Settings) -> dict[str, str | None]:
    """The hosts of the directory servers and the OIDC issuer, by the setting naming them."""
    found: dict[str, str | None] = {}
    if settings.auth.ldap is not None:
        for i, url in enumerate(settings.auth.ldap.urls):
            found[f"auth.ldap.urls[{i}]"] = host_of(url)
    if settings.auth.oidc is not None:
        found["auth.oidc.issuer"] = host_of(settings.auth.oidc.issuer)
    return found


def check_network(settings: Settings) -> CheckResult:
    """Every service a setting points at is on the premises, and the connect guard is strict."""
    name = "network"
    allowed = set(settings.network.allowed_hosts)
    endpoints = {
        "llm.base_url": host_of(settings.llm.base_url),
        "store.host": settings.store.host if settings.store.mode == "http" else None,
        "audit.dsn": _dsn_host(settings),
        **identity_endpoints(settings),
    }
    verdicts = {key: _on_premises(host, allowed) for key, host in endpoints.items() if host}
    outside = [f"{key} -> {endpoints[key]} ({why})" for key, (ok, why) in verdicts.items() if not ok]
    figures: dict[str, Any] = {
        "guard": settings.network.guard,
        "endpoints": {k: v for k, v in endpoints.items() if v},
        "allowed_hosts": sorted(allowed),
    }
    problems = []
    if outside:
        problems.append(
            "settings point outside the premises: "
            + "; ".join(outside)
            + ". Point them at local services, or list a host you have approved in network.allowed_hosts"
        )
    if settings.network.guard != "strict":
        problems.append(
            f"network.guard is {settings.network.guard!r}: connections to other hosts are not refused; set it to strict"
        )
    if problems:
        return CheckResult(name, False, "; ".join(problems), figures)
    hosts = ", ".join(f"{k} {v}" for k, v in figures["endpoints"].items()) or "no remote services configured"
    return CheckResult(name, True, f"guard strict; on the premises: {hosts}", figures)


def check_identity(settings: Settings, lookup: str | None = None) -> list[CheckResult]:
    """The directory and the OIDC provider auth.* names: each server reachable with valid TLS,
    the service account's bind, the provider's discovery, issuer and keys, and with `lookup` what
    the directory says of that user (never a password). Nothing when neither is configured."""
    results: list[CheckResult] = []
    if settings.auth.ldap is not None:
        from ui.directory import LdapDirectory

        probed = _guarded_probe("ldap", lambda: LdapDirectory(settings.auth.ldap).probe(lookup))  # type: ignore[arg-type]
        results.extend(CheckResult(f"ldap: {check}", ok, detail) for check, ok, detail in probed)
    elif lookup:
        results.append(
            CheckResult(
                "ldap", False, f"--lookup {lookup}: auth.ldap is not set, so there is no directory to ask"
            )
        )
    if settings.auth.oidc is not None:
        from ui.oidc import OidcClient

        def probe() -> list[tuple[str, bool, str]]:
            with OidcClient(settings.auth.oidc) as client:  # type: ignore[arg-type]
                return client.probe()

        results.extend(CheckResult(check, ok, detail) for check, ok, detail in _guarded_probe("oidc", probe))
    return results


def _guarded_probe(
    name: str, probe: Callable[[], list[tuple[str, bool, str]]]
) -> list[tuple[str, bool, str]]:
    try:
        return probe()
    except EnclaveError as exc:  # a setting that cannot work (ConfigError): named by the message
        return [(name, False, str(exc))]
    except Exception as exc:  # a bug in a check must not hide the others
        log.exception("the %s check failed", name)
        return [(name, False, f"the check itself failed: {type(exc).__name__}: {exc}")]


def run_checks(
    settings: Settings,
    store: SearchIndex | None = None,
    *,
    hashes: bool = False,
    llm_timeout_s: float = LLM_TIMEOUT_S,
    lookup: str | None = None,
) -> list[CheckResult]:
    """Every check, in a stable order. `store`: the running app's own, to look at (not a new one).
    `lookup`: a user the directory is asked about (enclave doctor --lookup)."""
    checks: Sequence[tuple[str, Callable[[], CheckResult]]] = (
        ("embedding model", lambda: check_embedding_model(settings, hashes=hashes)),
        ("chroma", lambda: check_chroma(settings, store)),
        ("lexical index", lambda: check_lexical(settings, store)),
        ("audit log", lambda: check_audit_log(settings)),
        ("llm", lambda: check_llm(settings, llm_timeout_s)),
        ("disk space", lambda: check_disk(settings)),
        ("telemetry", check_telemetry),
        ("network", lambda: check_network(settings)),
    )
    return [_guarded(name, check) for name, check in checks] + check_identity(settings, lookup)


# -- the admin overview --------------------------------------------------------------------------


def group_counts(settings: Settings) -> tuple[list[GroupCount], int, int]:
    """Documents and chunks per group from the manifest, and the totals (documents, chunks)."""
    path = settings.manifest_path
    if not path.exists():
        return [], 0, 0
    from ingest.manifest import Manifest

    manifest = Manifest(path)
    try:
        docs = manifest.docs()
    finally:
        manifest.close()
    per_group: dict[str, list[int]] = {}
    for doc in docs:
        for group in doc.groups:
            counts = per_group.setdefault(group, [0, 0])
            counts[0] += 1
            counts[1] += doc.chunks
    rows = [GroupCount(g, n, c) for g, (n, c) in sorted(per_group.items())]
    return rows, len(docs), sum(d.chunks for d in docs)


class AdminOverview:
    """What the admin page shows, gathered afresh on each call (the page's status source)."""

    def __init__(self, settings: Settings, store: SearchIndex | None = None) -> None:
        self.settings = settings
        self.store = store

    def __call__(self) -> AdminStatus:
        from core.errors import EnclaveError
        from ingest.reports import load_last_report

        checks = run_checks(self.settings, self.store)
        groups, documents, chunks = group_counts(self.settings)
        try:
            report, error = load_last_report(self.settings.data_dir), None
        except EnclaveError as exc:
            report, error = None, str(exc)
        return AdminStatus(checks, groups, documents, chunks, report, error)
