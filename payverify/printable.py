"""Text from the database or SumUp, made safe to show a person: on a terminal, in a CSV cell, in a mail.

A customer's name or a SumUp string can carry a line break (which forges a line of output), an escape
sequence (which moves the cursor, recolours or hides what a terminal shows), a bidi override (which
reverses it) or another invisible character. printable() shows each such character as a visible
escape, the way Python's repr does (`\\n`, `\\x1b`, `\\u202e`), and keeps every other character as
it is: letters of any script, combining accents, emoji, and spaces (U+3000 is part of Japanese names).

Nothing is dropped. A backslash is left as it is, so printable() may be applied twice (a line made of
parts that were already escaped) without changing anything: literal text `\\n` in a name reads the
same as an escaped line break, and neither is a line of its own.

Stdlib only: it is a leaf, used by the commands, doctor and the mail templates alike.
"""

from __future__ import annotations

import unicodedata

# What str.isprintable() refuses but a person may be shown as it is: spaces other than U+0020 (Zs),
# private-use characters (Co) and code points newer than this Python's Unicode database (Cn: emoji
# added since). None of them breaks a line, moves the cursor or reorders text.
_SHOWN_AS_THEY_ARE = frozenset({"Zs", "Co", "Cn"})
# What is escaped: controls (Cc: C0, DEL, C1 with ESC and CSI), format characters (Cf: bidi overrides
# and isolates, zero-width characters, the BOM, tags), lone surrogates (Cs, which JSON can carry and
# no terminal encoding can print) and the line and paragraph separators (Zl, Zp).
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def _shown(char: str) -> str:
    if char.isprintable() or unicodedata.category(char) in _SHOWN_AS_THEY_ARE:
        return char
    return _escape(char)


def printable(text: str, limit: int | None = None) -> str:
    """`text` on one line, every control or format character escaped visibly; with `limit`, cut to at
    most that many characters, the cut shown by a final "…"."""
    shown = text if text.isprintable() else "".join(_shown(c) for c in text)
    if limit is not None and len(shown) > limit:
        return shown[: max(limit - 1, 0)] + "…"
    return shown
