"""User-controlled text (paths, file and class names) made safe to show."""

from __future__ import annotations


def visible(text: str) -> str:
    """text with every character that is not printable (escape sequences, other control
    characters, bidirectional overrides, undecodable bytes) shown as a visible escape."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid in the file system's encoding
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def first_few(items: list[str], k: int) -> str:
    """'a, b, c and 4 more': the first k items of a list a message names."""
    shown = ", ".join(str(i) for i in items[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")
