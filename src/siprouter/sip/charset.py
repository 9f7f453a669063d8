"""Character-class checks by byte table: a compiled loop a few instructions a character, where
the regex engine costs tens (and a call into it, thousands). Used as the fast half of a check
whose regex stays the authority: ``chars_in(s, T) or RE.fullmatch(s)``."""

from __future__ import annotations

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def char_table(chars: str) -> bytes:
    """A 128-byte table marking the ASCII characters of ``chars``."""
    return bytes(1 if chr(i) in chars else 0 for i in range(128))


def chars_in(s: str, table: bytes) -> bool:
    """``s`` is not empty and every character is ASCII and marked in ``table``."""
    if not s:
        return False
    for i in range(len(s)):
        c = ord(s[i])
        if c > 127 or not table[c]:
            return False
    return True


def any_char_in(s: str, table: bytes) -> bool:
    """Some character of ``s`` is ASCII and marked in ``table`` (a regex search for a class of
    ASCII characters, as a loop)."""
    for i in range(len(s)):
        c = ord(s[i])
        if c < 128 and table[c]:
            return True
    return False
