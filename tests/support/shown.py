"""What a reader sees of a chat message: its text with the HTML tags taken out, entities read."""

from __future__ import annotations

from html.parser import HTMLParser


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def shown_text(content: str) -> str:
    """`<div class="enclave-prose"><p>You get 25 days [1].</p></div>` -> `You get 25 days [1].`"""
    parser = _Text()
    parser.feed(content)
    parser.close()
    return "".join(parser.parts)
