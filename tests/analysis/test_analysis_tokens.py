"""Token kinds: words rebuilt from sub-word pieces, then content / function / copied / special."""

from __future__ import annotations

from evolens.analysis.tokens import token_kinds, words_of


def test_pieces_join_into_words() -> None:
    tokens = [
        " The",
        " child",
        " appears",
        " to",
        " be",
        " cry",
        "ing",
        ".",
        " st",
        "rip",
        "ed",
        "<|im_end|>",
    ]
    words = [w for w, _ in words_of(tokens)]
    assert words == [
        "The",
        "child",
        "appears",
        "to",
        "be",
        "crying",
        "crying",
        ".",
        "striped",
        "striped",
        "striped",
        "<|im_end|>",
    ]
    assert [i for _, i in words_of(tokens)] == [0, 1, 2, 3, 4, 5, 5, 6, 7, 7, 7, 8]


def test_first_token_without_space_starts_a_word() -> None:
    assert words_of(["The", " sky", ","]) == [("The", 0), ("sky", 1), (",", 2)]


def test_kinds() -> None:
    prompt = "What is the color of the shape?"
    tokens = [" The", " shape", " is", " bright", " red", "dish", ",", "\n", "<|im_end|>", " Color", ""]
    assert token_kinds(tokens, prompt) == [
        "function",  # stop word
        "copied",  # in the prompt
        "function",
        "content",
        "content",  # "reddish"
        "content",
        "function",  # punctuation
        "function",  # whitespace
        "special",
        "copied",  # case-insensitive
        "special",  # empty string
    ]


def test_every_token_gets_a_kind() -> None:
    tokens = [" a", "b", "c", "!", "?!", " 42", "nd"]
    kinds = token_kinds(tokens, "")
    assert len(kinds) == len(tokens) and kinds[5:] == ["content", "content"]
