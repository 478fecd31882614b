"""The rule lexer: tokens carry their line and column and whether blanks came before them;
strings take USBGuard's escapes and no others; comments end a line anywhere outside a string."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekisho.policies.usbrules import RuleSyntaxError, TokenKind, tokenize, tokenize_line

W, S, O, C, E = TokenKind.WORD, TokenKind.STRING, TokenKind.OPEN, TokenKind.CLOSE, TokenKind.END


def kinds(line: str) -> list[tuple[TokenKind, str, int, bool]]:
    return [(t.kind, t.value, t.column, t.spaced) for t in tokenize_line(line)]


def test_words_sets_and_strings_with_columns():
    assert kinds('allow id one-of { 1050:* } name "Yubi Key"') == [
        (W, "allow", 1, True), (W, "id", 7, True), (W, "one-of", 10, True), (O, "{", 17, True),
        (W, "1050:*", 19, True), (C, "}", 26, True), (W, "name", 28, True), (S, "Yubi Key", 33, True),
        (E, "", 43, True)]


def test_braces_end_words_and_spacing_is_recorded():
    assert kinds("id{1050:*}x") == [(W, "id", 1, True), (O, "{", 3, False), (W, "1050:*", 4, False),
                                    (C, "}", 10, False), (W, "x", 11, False), (E, "", 12, True)]


def test_tabs_are_blanks_and_count_as_one_column():
    assert kinds("\tallow\t\tid") == [(W, "allow", 2, True), (W, "id", 9, True), (E, "", 11, True)]


def test_comment_ends_the_line_with_or_without_a_blank():
    assert kinds("allow# a comment") == [(W, "allow", 1, True), (E, "", 6, True)]
    assert kinds('allow name "x"  # c') == [(W, "allow", 1, True), (W, "name", 7, True), (S, "x", 12, True),
                                            (E, "", 17, True)]
    assert kinds("   # only a comment") == [(E, "", 4, True)]


def test_hash_and_braces_inside_a_string_are_text():
    assert kinds('"#{ }"')[0] == (S, "#{ }", 1, True)


def test_string_escapes_are_usbguards():
    (tok, _end) = tokenize_line(r'"a\"b\\c\x41\xe3\x81\x82"')
    assert tok.value == 'a"b\\cAあ'
    assert tok.text == r'"a\"b\\c\x41\xe3\x81\x82"'


def test_bytes_that_are_not_utf8_are_kept():
    (tok, _end) = tokenize_line(r'"\xff\x00"')
    assert tok.value.encode("utf-8", "surrogateescape") == b"\xff\x00"


def test_utf8_text_in_a_string_is_its_bytes():
    (raw, _), (escaped, _) = tokenize_line('"カード"'), tokenize_line(r'"\xe3\x82\xab\xe3\x83\xbc\xe3\x83\x89"')
    assert raw.value == escaped.value == "カード"


@pytest.mark.parametrize("line, column, message", [
    (r'allow name "\n"', 13, r'unknown escape "\n": a string may use \" \\ and \xHH only (as in USBGuard)'),
    (r'allow name "\0"', 13, r'unknown escape "\0"'),
    (r'allow name "\x4"', 13, r"expected two hex digits after \x"),
    ('allow name "abc', 12, 'this string is not closed: expected " before the end of the line'),
    ('allow name "abc\\', 16, "this string is not closed: the line ends in a backslash"),
    ('allow name "x"\r', 15, "carriage return in a rules file"),
    ('allow name "x\r"', 14, "carriage return in a string"),
    ("\ufeffallow", 1, "byte-order mark"),
])
def test_lexer_errors_name_the_column(line, column, message):
    with pytest.raises(RuleSyntaxError) as e:
        tokenize_line(line, 7, "usb.rules")
    assert (e.value.file, e.value.line, e.value.column) == ("usb.rules", 7, column)
    assert e.value.message.startswith(message)


def test_error_text_is_file_line_column_then_the_line_and_a_caret():
    with pytest.raises(RuleSyntaxError) as e:
        tokenize_line('\tallow name "\\q"', 3, "usb.rules")
    assert str(e.value) == ('usb.rules:3:14: unknown escape "\\q": a string may use \\" \\\\ and \\xHH only '
                            '(as in USBGuard)\n'
                            '\tallow name "\\q"\n'
                            '\t            ^')


def test_tokenize_numbers_lines_and_ends_each_one():
    tokens = list(tokenize("allow\n\nblock # x\n", "f"))
    assert [(t.kind, t.line, t.column) for t in tokens] == [
        (W, 1, 1), (E, 1, 6), (E, 2, 1), (W, 3, 1), (E, 3, 7), (E, 4, 1)]


def test_only_newline_splits_lines():
    tokens = list(tokenize("allow\x0cblock\u2028x"))
    assert [t.value for t in tokens] == ["allow\x0cblock\u2028x", ""]


@given(st.text())
def test_any_text_lexes_or_fails_with_a_position(text):
    try:
        tokens = list(tokenize(text))
    except RuleSyntaxError as e:
        assert e.line >= 1 and 1 <= e.column <= len(e.source) + 1
    else:
        assert tokens[-1].kind is E
