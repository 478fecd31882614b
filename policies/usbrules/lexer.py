"""Tokens of the USB rule language, each with its line and column, and the error every stage
reports.

USBGuard reads a rules file one line at a time and each line is one rule, so a line is the unit
here too: ``tokenize_line`` turns one line into tokens that end with an ``END`` token, and a
``#`` ends the line early (everything after it is a comment, as in USBGuard, where a comment
may follow a rule with or without a blank before it).

A token records whether blanks (spaces or tabs, nothing else) came before it, because
USBGuard's grammar requires them in some places and not in others: ``id 1050:*`` needs the
blank, ``{1050:*}`` does not. The parser checks; the lexer only records.

Quoted strings take USBGuard's escapes, and only the ones that survive USBGuard's own
unescaping: ``\\"``, ``\\\\`` and ``\\xHH``. USBGuard's grammar also lets ``\\n``, ``\\t``, ``\\0``
and a few more through, and then rejects them when it builds the rule, so they are errors here.
A string's value is its bytes, kept as ``str`` the way ``rule.canonical_text`` describes.

A ``(`` inside a word opens a condition's argument (``localtime(08:00-17:00)``,
``allowed-matches(name "Keyboard")``), which runs to the first ``)`` not escaped and becomes part
of the word, blanks, quotes and ``#`` included: USBGuard's ``condition_argument`` is a string
bounded by ``(`` and ``)``, with its escapes (``\\xHH``, ``\\ddd``, ``\\a \\b \\f \\n \\r \\t \\v
\\\\ \\' \\0`` and ``\\)``) kept as written for the condition to read.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

BLANKS = " \t"
_NOT_IN_WORD = frozenset(BLANKS + '{}"#\r\ufeff')
_WORD_ENDS = _NOT_IN_WORD | {"("}
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_ARGUMENT_ESCAPES = frozenset("abfnrtv\\'0)")


class TokenKind(enum.Enum):
    WORD = "word"
    STRING = "string"
    OPEN = "{"
    CLOSE = "}"
    END = "end of line"


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    """As written, quotes and escapes included."""
    value: str
    """A string's decoded value; for other tokens the text."""
    line: int
    column: int
    """1-based, counted in characters."""
    spaced: bool
    """Blanks come before it (the first token of a line counts as spaced)."""


class RuleSyntaxError(ValueError):
    """A rules file (or one rule) that sekisho will not run: the file, line and column, what is
    wrong, the line itself and a caret under the column. ``also`` holds the errors found on later
    lines, so one load reports every broken line at once."""

    def __init__(self, message: str, *, file: str, line: int, column: int, source: str,
                 also: tuple[RuleSyntaxError, ...] = ()) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.source = source
        self.also = also
        super().__init__(str(self))

    @property
    def errors(self) -> tuple[RuleSyntaxError, ...]:
        return (self, *self.also)

    def format_one(self) -> str:
        # Tabs stay tabs under the caret so that it lines up in a terminal whatever its tab width.
        pad = "".join(c if c == "\t" else " " for c in self.source[:self.column - 1])
        return f"{self.file}:{self.line}:{self.column}: {self.message}\n{self.source}\n{pad}^"

    def __str__(self) -> str:
        return "\n".join(e.format_one() for e in self.errors)

    def with_also(self, also: tuple[RuleSyntaxError, ...]) -> RuleSyntaxError:
        return RuleSyntaxError(self.message, file=self.file, line=self.line, column=self.column,
                               source=self.source, also=also)


@dataclass(frozen=True)
class _Where:
    """The line being read, for errors."""

    source: str
    line: int
    file: str

    def error(self, message: str, pos: int) -> RuleSyntaxError:
        return RuleSyntaxError(message, file=self.file, line=self.line, column=pos + 1, source=self.source)


def split_lines(text: str) -> list[str]:
    """Lines as USBGuard's ``getline`` sees them: split on ``\\n`` only, so a stray form feed or
    Unicode line separator stays inside its line and is reported there."""
    return text.split("\n")


def tokenize_line(source: str, line: int = 1, file: str = "<rule>") -> tuple[Token, ...]:
    """The tokens of one line, ending with an ``END`` token (at the ``#`` of a comment, or one
    column past the last character)."""
    where = _Where(source, line, file)
    tokens: list[Token] = []
    spaced = True
    pos = 0
    while pos < len(source):
        c = source[pos]
        start = pos
        if c in BLANKS:
            pos += 1
            spaced = True
            continue
        if c == "#":
            break
        if c == "\r":
            raise where.error("carriage return in a rules file: save it with Unix line ends (LF only)", pos)
        if c == "\ufeff":
            raise where.error("byte-order mark in a rules file: save it as UTF-8 without a BOM", pos)
        if c == '"':
            value, pos = _string(where, pos)
            tokens.append(Token(TokenKind.STRING, source[start:pos], value, line, start + 1, spaced))
        elif c in "{}":
            pos += 1
            tokens.append(Token(TokenKind.OPEN if c == "{" else TokenKind.CLOSE, c, c, line, start + 1, spaced))
        else:
            while pos < len(source) and source[pos] not in _WORD_ENDS:
                pos += 1
            if pos < len(source) and source[pos] == "(":
                pos = _argument(where, pos)
            tokens.append(Token(TokenKind.WORD, source[start:pos], source[start:pos], line, start + 1, spaced))
        spaced = False
    tokens.append(Token(TokenKind.END, "", "", line, pos + 1, True))
    return tuple(tokens)


def tokenize(text: str, file: str = "<rules>") -> Iterator[Token]:
    """Every line's tokens in turn, each line ending with its ``END`` token."""
    for number, source in enumerate(split_lines(text), start=1):
        yield from tokenize_line(source, number, file)


def _string(where: _Where, opening: int) -> tuple[str, int]:
    """The value of the quoted string whose opening quote is at ``opening``, and the position
    just past its closing quote."""
    source = where.source
    pos = opening + 1
    value = bytearray()
    while True:
        if pos >= len(source):
            raise where.error('this string is not closed: expected " before the end of the line', opening)
        c = source[pos]
        if c == '"':
            return value.decode("utf-8", "surrogateescape"), pos + 1
        if c == "\r":
            raise where.error("carriage return in a string: save the file with Unix line ends (LF only)", pos)
        if c == "\\":
            byte, pos = _escape(where, pos)
            value += byte
            continue
        try:
            value += c.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise where.error(f"character {c!r} is neither text nor an escaped byte", pos) from e
        pos += 1


def _argument(where: _Where, opening: int) -> int:
    """The position just past the ``)`` that closes the condition argument opened at ``opening``
    (USBGuard's ``bounded_string<'(', ')'>``)."""
    source = where.source
    pos = opening + 1
    while True:
        if pos >= len(source):
            raise where.error('this condition\'s argument is not closed: expected ")" before the end of the line',
                              opening)
        c = source[pos]
        if c == ")":
            return pos + 1
        if c == "\r":
            raise where.error("carriage return in a rules file: save it with Unix line ends (LF only)", pos)
        if c == "\\":
            nxt = source[pos + 1:pos + 2]
            if nxt == "x":
                if not (len(source) >= pos + 4 and set(source[pos + 2:pos + 4]) <= _HEX):
                    raise where.error("expected two hex digits after \\x (\\x41 is A)", pos)
                pos += 4
                continue
            if nxt in _DIGITS:  # one to three decimal digits
                pos += 2
                for _ in range(2):
                    if pos < len(source) and source[pos] in _DIGITS:
                        pos += 1
                continue
            if not nxt or nxt not in _ARGUMENT_ESCAPES:
                raise where.error(f'unknown escape "\\{nxt}" in a condition\'s argument (as in USBGuard, '
                                  f'\\) \\\\ \\xHH and C escapes)', pos)
            pos += 2
            continue
        pos += 1


def _escape(where: _Where, backslash: int) -> tuple[bytes, int]:
    source = where.source
    nxt = source[backslash + 1] if backslash + 1 < len(source) else ""
    if nxt in ('"', "\\"):
        return nxt.encode(), backslash + 2
    if nxt == "x":
        digits = source[backslash + 2:backslash + 4]
        if len(digits) == 2 and set(digits) <= _HEX:
            return bytes([int(digits, 16)]), backslash + 4
        raise where.error("expected two hex digits after \\x (\\x41 is A)", backslash)
    if not nxt:
        raise where.error("this string is not closed: the line ends in a backslash", backslash)
    raise where.error(f'unknown escape "\\{nxt}": a string may use \\" \\\\ and \\xHH only (as in USBGuard)',
                      backslash)
