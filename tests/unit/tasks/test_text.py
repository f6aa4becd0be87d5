from __future__ import annotations

from tasks.text import chunk


def test_paragraphs_are_packed_up_to_the_size() -> None:
    text = "\n\n".join(["a" * 400, "b" * 400, "c" * 400])
    assert chunk(text, size=1000) == ["a" * 400 + "\n\n" + "b" * 400, "c" * 400]


def test_a_long_paragraph_is_split_and_nothing_is_lost() -> None:
    text = "x" * 2500
    chunks = chunk(text, size=1000)
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert "".join(chunks) == text


def test_blank_paragraphs_vanish() -> None:
    assert chunk("\n\n\n\none\n\n   \n\ntwo", size=1000) == ["one\n\ntwo"]
