"""The link a cited source carries: to ui.server's /files route by document id, never a path."""

from __future__ import annotations

from core.types import Citation
from ui.markup import citation_markdown, file_url


def cite(doc_id: str, page: int | None = 3) -> Citation:
    return Citation(n=1, chunk_id=f"{doc_id}:0001", doc_id=doc_id, source="/srv/share/hr/leave (v2).pdf",
                    title="Leave", section="", page=page, snippet="Staff get 25 days.")  # fmt: skip


def test_the_link_names_the_document_and_its_page() -> None:
    assert file_url(cite("0f3a9c")) == "files/0f3a9c#page=3"
    assert file_url(cite("0f3a9c", page=None)) == "files/0f3a9c"
    assert "[open the file](files/0f3a9c#page=3)" in citation_markdown(cite("0f3a9c"))


def test_a_hostile_id_cannot_leave_the_route_or_the_markdown_link() -> None:
    url = file_url(cite("../../etc/passwd) [x](javascript:alert(1)", page=None))
    assert url == "files/..%2F..%2Fetc%2Fpasswd%29%20%5Bx%5D%28javascript%3Aalert%281%29"
    assert "/srv/share" not in url and ")" not in url and " " not in url
