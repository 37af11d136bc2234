"""Calico's label selectors (BGPPeer ``nodeSelector`` / ``peerSelector``): parsing and evaluation.

The grammar and the meaning are Calico's, from projectcalico/calico at 87c15906f20c
(``libcalico-go/lib/selector/tokenizer/tokenizer.go``, ``parser/parser.go``, ``parser/ast.go``)::

    selector  := ""  |  or                       (empty: all())
    or        := and ( "||" and )*
    and       := op ( "&&" op )*
    op        := "!"* ( "all()" | "global()" | "has(" LABEL ")" | "(" or ")"
                      | LABEL ( "==" | "!=" ) STRING
                      | LABEL ( "in" | "not in" ) "{" [ STRING ( "," STRING )* [","] ] "}" )
    LABEL     := [A-Za-z0-9_./-]+                (at most 512 characters)
    STRING    := '...' | "..."                   (no escapes; the other quote may appear inside)

Spaces and tabs separate tokens. ``&&`` binds tighter than ``||``; ``!`` applies to one operation and may
repeat. Semantics on a node's labels (a str -> str mapping):

- ``k == 'v'``: k present with value v; ``k in {..}``: k present with a value in the set.
- ``k != 'v'``: true when k is absent or its value is not v; ``k not in {..}``: true when k is absent or
  its value is not in the set (Calico's ``LabelNeValueNode`` / ``LabelNotInSetNode``: a missing label
  satisfies the negative forms).
- ``has(k)``: k present, whatever its value. ``all()`` and ``global()``: always true.

Calico's ``contains``, ``starts with`` and ``ends with`` are outside what its documentation shows for
BGPPeer and are refused with the usual error. `parse` raises `SelectorError` (a ValueError) naming the
0-based character position and what was expected there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Selector", "SelectorError", "parse"]

MAX_LABEL_LENGTH = 512  # Calico's tokenizer.MaxLabelLength
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")

Labels = Mapping[str, str]
_Eval = Callable[[Labels], bool]


class SelectorError(ValueError):
    """A bad selector: ``str(e) == "selector 'TEXT': at character POS: expected WHAT"``; ``position`` is
    0-based in ``text``."""

    def __init__(self, text: str, position: int, expected: str) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        super().__init__(f"selector {text!r}: at character {position}: expected {expected}")


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector. ``text`` is the source (``==`` compares it); `matches` evaluates it."""

    text: str
    _evaluate: _Eval

    def matches(self, labels: Labels) -> bool:
        """Do the labels (name -> value) satisfy the selector?"""
        return self._evaluate(labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Selector({self.text!r})"


def parse(text: str) -> Selector:
    """Parse a Calico selector; SelectorError (position, what was expected) when it is not one."""
    return Selector(text, _Parser(text).root())


def _all(_: Labels) -> bool:
    return True


class _Parser:
    """Recursive descent over the text itself (no token list), as Calico's grammar needs one token of
    lookahead at most."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # ---- scanning

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def fail(self, expected: str) -> SelectorError:
        return SelectorError(self.text, self.pos, expected)

    def at(self, word: str) -> bool:
        self.skip()
        return self.text.startswith(word, self.pos)

    def take(self, word: str) -> bool:
        if self.at(word):
            self.pos += len(word)
            return True
        return False

    def at_word(self, word: str) -> bool:
        """``word`` next, not followed by a label character (``in`` but not ``inner``)."""
        if not self.at(word):
            return False
        end = self.pos + len(word)
        return end >= len(self.text) or self.text[end] not in _LABEL_CHARS

    def label(self) -> str:
        self.skip()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _LABEL_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.fail("a label name")
        if self.pos - start > MAX_LABEL_LENGTH:
            self.pos = start
            raise self.fail(f"a label name of at most {MAX_LABEL_LENGTH} characters")
        return self.text[start : self.pos]

    def string(self) -> str:
        self.skip()
        quote = self.text[self.pos : self.pos + 1]
        if quote not in ("'", '"'):
            raise self.fail("a quoted string")
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise self.fail(f"a closing {quote} for the string")
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    # ---- grammar

    def root(self) -> _Eval:
        self.skip()
        if self.pos == len(self.text):
            return _all
        result = self.or_expr()
        self.skip()
        if self.pos != len(self.text):
            raise self.fail("'&&', '||' or the end of the selector")
        return result

    def or_expr(self) -> _Eval:
        terms = [self.and_expr()]
        while self.take("||"):
            terms.append(self.and_expr())
        if len(terms) == 1:
            return terms[0]
        return lambda labels: any(t(labels) for t in terms)

    def and_expr(self) -> _Eval:
        terms = [self.operation()]
        while self.take("&&"):
            terms.append(self.operation())
        if len(terms) == 1:
            return terms[0]
        return lambda labels: all(t(labels) for t in terms)

    def operation(self) -> _Eval:
        negated = False
        while self.at("!") and not self.at("!="):
            self.pos += 1
            negated = not negated
        inner = self.term()
        if negated:
            return lambda labels: not inner(labels)
        return inner

    def term(self) -> _Eval:
        if self.take("("):
            inner = self.or_expr()
            if not self.take(")"):
                raise self.fail("')'")
            return inner
        for word in ("all", "global"):
            if self.at(word + "("):
                self.pos += len(word) + 1
                if not self.take(")"):
                    raise self.fail(f"')' after {word}(")
                return _all
        if self.at("has("):
            self.pos += 4
            name = self.label()
            if not self.take(")"):
                raise self.fail("')' after the label name in has(")
            return lambda labels: name in labels
        self.skip()
        if self.pos == len(self.text):
            raise self.fail("a label name, has(, all(), '!' or '('")
        name = self.label()
        if self.take("=="):
            value = self.string()
            return lambda labels: labels.get(name) == value
        if self.take("!="):
            value = self.string()
            return lambda labels: labels.get(name) != value
        if self.at_word("not"):
            self.pos += 3
            if not self.at_word("in"):
                raise self.fail("'in' after 'not'")
            self.pos += 2
            values = self.set_literal()
            return lambda labels: labels.get(name) not in values
        if self.at_word("in"):
            self.pos += 2
            values = self.set_literal()
            return lambda labels: name in labels and labels[name] in values
        raise self.fail(f"an operator after label {name!r}: ==, !=, in or not in")

    def set_literal(self) -> frozenset[str]:
        if not self.take("{"):
            raise self.fail("'{' to open a set of strings")
        values: set[str] = set()
        while not self.at("}"):
            values.add(self.string())
            if not self.take(","):
                break
        if not self.take("}"):
            raise self.fail("',' or '}' in the set")
        return frozenset(values)
