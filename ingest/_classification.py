"""Title-or-not for unstructured's elements at a fraction of the spaCy cost, with the same answers.

unstructured sorts each paragraph into NarrativeText, Title or Text with
`is_possible_narrative_text` and then `is_possible_title`, both built on spaCy (tokens, POS tags,
sentences), one spaCy call per paragraph: ~10 ms each, most of the time spent on long text files
and PDFs. Enclave reads one distinction only: Title (it becomes a section heading) or not. So,
while `deferred_titles()` is active in the calling thread:

- where a partitioner never makes a Title out of text (the text fall-back of DOCX and HTML, whose
  headings come from styles and tags) the NarrativeText-or-Text question is answered without spaCy;
- where it can (plain text, PDF text layer, XLSX, XML leaves, PPTX), a text that
  `is_possible_title` refuses before it would reach spaCy (more than 12 words, mostly non-letters,
  ending in a comma, all digits) is not sent to spaCy at all; in all but PPTX every other text
  becomes a provisional Title, and `Titles.resolve()` later runs unstructured's own two checks on
  all of them at once, with spaCy batched (`nlp.pipe`): several times cheaper per text.

`Titles.is_title(element)` then gives, for every element, exactly the answer unstructured would
have given; only NarrativeText versus Text may differ, which no Enclave code reads. Outside
`deferred_titles()` (another thread, another caller of unstructured) nothing changes.
The patched names are private, like those in `_spacy_offline`: if unstructured renames them,
`install()` fails loudly instead of silently losing the speed-up or the headings.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

# Partitioners whose every Title comes from text classification (PDF and XML use text's
# element_from_text): a text is a title or not wherever it occurs, so verdicts can be keyed on it.
_DEFERRED = ("unstructured.partition.text", "unstructured.partition.xlsx")
# PPTX also makes Titles from title placeholders, whose text may recur in the body: classified
# at once (no batching), only skipping spaCy where no Title can result.
_SHORTCUT = ("unstructured.partition.pptx",)
# Partitioners whose text classification never yields Title.
_NEVER_TITLE = ("unstructured.partition.docx", "unstructured.partition.html.parser")

_WORD = re.compile(r"[A-Za-z]+")
_BATCH = 256

_lock = threading.Lock()
_installed = False
_local = threading.local()  # .titles: the Titles collecting in this thread, if any
_original: dict[str, Callable[..., Any]] = {}


class Titles:
    """Texts made provisional Titles during one partition, and the real verdict on each."""

    def __init__(self) -> None:
        self.candidates: dict[str, bool | None] = {}

    def resolve(self) -> None:
        """Run unstructured's real checks on every candidate, spaCy batched."""
        pending = [text for text, verdict in self.candidates.items() if verdict is None]
        if not pending:
            return
        from unstructured.nlp import tokenize

        nlp = tokenize._get_nlp()
        docs = dict(zip(pending, nlp.pipe(pending, batch_size=_BATCH), strict=True))
        _local.docs = docs
        try:
            narrative, title = _original["narrative"], _original["title"]
            for text in pending:
                self.candidates[text] = not narrative(text) and title(text)
        finally:
            _local.docs = None

    def is_title(self, element: Any) -> bool:
        if element.category != "Title":
            return False
        verdict = self.candidates.get(str(element.text), True)  # not provisional: a real Title
        if verdict is None:
            raise RuntimeError("Titles.resolve() must run before is_title()")
        return verdict


@contextlib.contextmanager
def deferred_titles() -> Iterator[Titles]:
    """Collect title candidates in this thread instead of classifying them one spaCy call each."""
    install()
    titles = Titles()
    previous = getattr(_local, "titles", None)
    _local.titles = titles
    try:
        yield titles
    finally:
        _local.titles = previous


def _title_max_words() -> int:
    # The same setting, read the same way, as unstructured's is_possible_title.
    return int(os.environ.get("UNSTRUCTURED_TITLE_MAX_WORD_LENGTH", 12))


def cannot_be_title(text: str) -> bool:
    """Whether unstructured's `is_possible_title` refuses `text` before its first spaCy call.

    Its checks up to `sentence_count`, in its order; each of them can only answer "not a title".
    """
    from unstructured.nlp.patterns import ENDS_IN_PUNCT_RE
    from unstructured.partition.text_type import under_non_alpha_ratio

    if len(text) == 0:
        return True
    if text.isupper() and ENDS_IN_PUNCT_RE.search(text) is not None:
        return True
    if len(text.split(" ")) > _title_max_words():
        return True
    threshold = float(os.environ.get("UNSTRUCTURED_TITLE_NON_ALPHA_THRESHOLD", 0.5))
    if under_non_alpha_ratio(text, threshold=threshold):
        return True
    if text.endswith(","):
        return True
    return text.isnumeric()


def looks_narrative(text: str) -> bool:
    """A spaCy-free stand-in for `is_possible_narrative_text` where only Title-or-not is read:
    some letters, not mostly capitalised words, not mostly non-letters."""
    from unstructured.partition.text_type import under_non_alpha_ratio

    if not text or text.isnumeric() or under_non_alpha_ratio(text, threshold=0.5):
        return False
    words = _WORD.findall(text)
    capitalised = sum(1 for w in words if w[0].isupper())
    return bool(words) and capitalised / len(words) <= 0.5


def _narrative_deferred(text: str, *args: Any, **kwargs: Any) -> bool:
    titles: Titles | None = getattr(_local, "titles", None)
    if titles is None or args or kwargs:  # a caller with its own thresholds: classified as asked
        return bool(_original["narrative"](text, *args, **kwargs))
    if cannot_be_title(text):
        return looks_narrative(text)
    titles.candidates.setdefault(str(text), None)
    return False  # so that the partitioner asks is_possible_title next, and gets True


def _narrative_shortcut(text: str, *args: Any, **kwargs: Any) -> bool:
    if getattr(_local, "titles", None) is not None and cannot_be_title(text):
        return looks_narrative(text)
    return bool(_original["narrative"](text, *args, **kwargs))


def _title(text: str, *args: Any, **kwargs: Any) -> bool:
    titles: Titles | None = getattr(_local, "titles", None)
    if titles is None or args or kwargs or str(text) not in titles.candidates:
        return bool(_original["title"](text, *args, **kwargs))
    return True  # provisional: Titles.resolve() decides


def _narrative_never_title(text: str, *args: Any, **kwargs: Any) -> bool:
    if getattr(_local, "titles", None) is None:
        return bool(_original["narrative"](text, *args, **kwargs))
    return looks_narrative(text)


def _process(text: str) -> Any:
    docs: dict[str, Any] | None = getattr(_local, "docs", None)
    if docs is not None:
        doc = docs.get(str(text))
        if doc is not None:
            return doc
    return _original["process"](text)


def install() -> None:
    """Swap the classifiers in unstructured's partitioner modules; idempotent, thread-safe."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        from unstructured.nlp import tokenize
        from unstructured.partition import text_type

        plan: list[tuple[Any, str, Callable[..., Any]]] = [(tokenize, "_process", _process)]
        for name in _DEFERRED:
            module = importlib.import_module(name)
            plan.append((module, "is_possible_narrative_text", _narrative_deferred))
            plan.append((module, "is_possible_title", _title))
        for name in _SHORTCUT:
            plan.append((importlib.import_module(name), "is_possible_narrative_text", _narrative_shortcut))
        for name in _NEVER_TITLE:
            plan.append((importlib.import_module(name), "is_possible_narrative_text", _narrative_never_title))
        missing = [f"{module.__name__}.{attr}" for module, attr, _ in plan if not hasattr(module, attr)]
        if missing:
            raise ImportError(
                f"this unstructured version no longer has {', '.join(missing)}; "
                "ingest/_classification.py must be updated before it can be used"
            )
        _original.update(
            narrative=text_type.is_possible_narrative_text,
            title=text_type.is_possible_title,
            process=tokenize._process,
        )
        for module, attr, function in plan:
            setattr(module, attr, function)
        _installed = True
