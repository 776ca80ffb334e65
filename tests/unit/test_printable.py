"""printable(): what every command, doctor and the mail templates show of a name or a SumUp string."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payverify.printable import printable

# What must never reach a terminal or a mail as it is: controls, format characters (bidi overrides,
# zero-width characters), lone surrogates, and the line and paragraph separators.
ESCAPED = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def hidden(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in ESCAPED]


@pytest.mark.parametrize(("raw", "shown"), [
    ("Alex\nSumUp:    PAID, 999.00 GBP", "Alex\\nSumUp:    PAID, 999.00 GBP"),
    ("a\r\tb", "a\\r\\tb"),
    ("\x1b[2K\x1b[1A", "\\x1b[2K\\x1b[1A"),                   # erase the line, cursor up
    ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),               # OSC: the window title, ended by BEL
    ("PAID\x08\x08\x08\x08FAIL", "PAID\\x08\\x08\\x08\\x08FAIL"),  # backspaces over a word
    ("\x9b2K\x7f\x00", "\\x9b2K\\x7f\\x00"),                  # C1 CSI, DEL, NUL
    ("abc\u202egp.exe", "abc\\u202egp.exe"),                  # right-to-left override
    ("\u2066x\u2069\u200b\ufeff\u00ad", "\\u2066x\\u2069\\u200b\\ufeff\\xad"),  # isolates, zero-width, BOM, soft hyphen
    ("one\u2028two\u2029three\x85", "one\\u2028two\\u2029three\\x85"),  # line separators, NEL
    ("tag\U000e0041", "tag\\U000e0041"),                      # a Unicode tag character
    ("half \ud83d", "half \\ud83d"),                           # a lone surrogate (JSON can carry one)
])
def test_control_and_format_characters_are_shown_escaped(raw, shown):
    assert printable(raw) == shown


@pytest.mark.parametrize("name", [
    "Querée", "Ørsted", "Nguyễn", unicodedata.normalize("NFD", "Nguyễn"), "Łódź", "Ἀθῆναι", "Müller-Lüdenscheidt",
    "山田\u3000太郎", "محمد", "Иванова", "O'Neil & \"Bob\" <b>", "back\\slash", "🎟️ Fan", "\ue000",
])
def test_names_print_as_they_are(name):
    assert printable(name) == name


def test_a_long_text_is_cut_visibly():
    assert printable("x" * 100, 60) == "x" * 59 + "…"
    assert printable("short", 60) == "short"
    assert len(printable("\x1b" * 100, 20)) == 20


@given(st.text())
def test_the_output_is_one_line_without_a_control_or_format_character(text):
    shown = printable(text)
    assert hidden(shown) == []
    assert len(shown.splitlines()) <= 1


@given(st.text())
def test_nothing_is_dropped(text):
    """Every character that is kept appears in order, and each escaped one leaves a visible escape."""
    shown = printable(text)
    kept = [c for c in text if unicodedata.category(c) not in ESCAPED]
    rest = iter(shown)
    assert all(c in rest for c in kept)  # a subsequence of the output
    assert shown.count("\\") >= text.count("\\") + len(hidden(text))


@given(st.text())
def test_applying_it_twice_changes_nothing(text):
    assert printable(printable(text)) == printable(text)


@given(st.text(alphabet=st.characters(exclude_categories=tuple(ESCAPED))))
def test_text_without_control_characters_is_unchanged(text):
    assert printable(text) == text
