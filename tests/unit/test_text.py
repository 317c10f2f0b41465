"""What a user's text becomes before it is stored: control characters out, everything else kept."""

from __future__ import annotations

import sys
import unicodedata

from app.services.text import MAX_STORED_CHARS, clean_text


def test_every_control_character_but_tab_and_newline_is_removed_and_nothing_else() -> None:
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        if 0xD800 <= code <= 0xDFFF:  # lone surrogates are replaced, not removed (PostgreSQL refuses them)
            continue
        kept = unicodedata.category(ch) != "Cc" or ch in "\n\t"
        assert clean_text(f"a{ch}b") == (f"a{ch}b" if kept else "ab"), hex(code)


def test_text_is_trimmed_and_bounded() -> None:
    assert clean_text("  \x07 hello\r\n ") == "hello"
    assert clean_text("\x00") == ""
    assert len(clean_text("x" * (MAX_STORED_CHARS + 10))) == MAX_STORED_CHARS
    assert clean_text("lone \ud800 surrogate") == "lone \ufffd surrogate"
