"""The plain look shared by the figures (``evolens.plots``) and the report: token kinds and their colours,
series colours, and how a token's invisible characters are written. No matplotlib here."""

from __future__ import annotations

TOKEN_KINDS = ("content", "function", "copied", "special")
"""The kinds a generated token can be (``evolens.analysis.tokens``)."""
KIND_LABELS = {
    "all": "all tokens",
    "content": "content words",
    "function": "function words, punctuation",
    "copied": "copied from prompt",
    "special": "special tokens",
}
KIND_COLORS = {
    "all": "#222222",
    "content": "#d62728",
    "function": "#1f77b4",
    "copied": "#ff7f0e",
    "special": "#7f7f7f",
}
SERIES_COLORS = ("#1f77b4", "#d62728", "#e377c2", "#17becf", "#2ca02c", "#ff7f0e", "#8c564b")
WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥"}
"""How a figure or the report shows whitespace inside a token (other invisible characters: \\uXXXX)."""


def visible_token(token: str) -> str:
    """A token with every whitespace character made visible: spaces as "␣", newlines as "↵", tabs as "⇥",
    other invisible characters as \\uXXXX; the empty token as "∅"."""
    text = "".join(WHITESPACE.get(ch) or _printable(ch) for ch in str(token))
    return text or "∅"


def _printable(character: str) -> str:
    """The character itself when it draws as something, else its \\uXXXX escape."""
    if character.isprintable() and not character.isspace():
        return character
    return f"\\u{ord(character):04x}"
