"""Text encodings: what the first bytes show (BOMs, BOM-less UTF-16), and decoding the rest."""

from __future__ import annotations

# UTF-32 first: its little-endian BOM begins with UTF-16's.
_TEXT_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def sniff(head: bytes) -> str | None:
    """The encoding shown by a byte-order mark, or by the NUL pattern of BOM-less UTF-16; else None."""
    for bom, encoding in _TEXT_BOMS:
        if head.startswith(bom):
            return encoding
    sample = head[: len(head) // 2 * 2]
    if len(sample) < 4:
        return None
    pairs = len(sample) // 2
    even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
    # ASCII-heavy UTF-16 has a NUL in (nearly) every other byte and almost none in between.
    if odd_nuls > 0.3 * pairs and even_nuls < 0.05 * pairs:
        return "utf-16-le"
    if even_nuls > 0.3 * pairs and odd_nuls < 0.05 * pairs:
        return "utf-16-be"
    return None


def decode(data: bytes, encoding: str | None = None) -> str:
    """`data` as text: in `encoding` or what its first bytes show; else UTF-8; else the best guess
    of charset-normalizer; else cp1252, which maps every byte (so this never fails)."""
    encoding = encoding or sniff(data[:8192])
    if encoding:
        return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1 << 20]).best()
    if best is not None and best.encoding:
        try:
            return data.decode(best.encoding)
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("cp1252", errors="replace")
