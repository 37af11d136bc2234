"""Calico's selector grammar (`bgpd.datastore.selector`): the forms Calico's documentation shows, its
semantics for missing labels, the errors, and a property against a small model evaluator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.datastore.selector import Selector, SelectorError, parse

RR = {"route-reflector": "true", "kubernetes.io/hostname": "rr0"}
RACK_A = {"rack": "a", "zone": "z1"}
RACK_B = {"rack": "b"}
BARE: dict[str, str] = {}

# (selector, labels, expected): Calico's docs (selectors in the resource reference, the route reflector
# and BGP peering how-tos) and ast.go's semantics for a missing label
CASES = [
    ("all()", BARE, True),
    ("", RACK_A, True),
    ("   ", BARE, True),
    ("global()", RACK_A, True),
    ("route-reflector == 'true'", RR, True),
    ('route-reflector == "true"', RR, True),
    ("route-reflector == 'true'", RACK_A, False),
    ("rack != 'a'", RACK_A, False),
    ("rack != 'a'", RACK_B, True),
    ("rack != 'a'", BARE, True),  # a missing label is "not equal"
    ("has(rack)", RACK_A, True),
    ("has(rack)", BARE, False),
    ("!has(route-reflector)", RACK_A, True),
    ("!has(route-reflector)", RR, False),
    ("!!has(rack)", RACK_A, True),
    ("rack in {'a', 'b'}", RACK_B, True),
    ("rack in {'a','b'}", BARE, False),
    ('rack in { "c" }', RACK_A, False),
    ("rack in {}", RACK_A, False),
    ("rack in {'a',}", RACK_A, True),  # Calico's parser takes a trailing comma
    ("rack not in {'a'}", RACK_B, True),
    ("rack not in {'a'}", RACK_A, False),
    ("rack not   in {'a'}", BARE, True),  # missing: "not in" holds
    ("rack == 'a' && zone == 'z1'", RACK_A, True),
    ("rack == 'a' && zone == 'z1'", RACK_B, False),
    ("rack == 'b' || has(route-reflector)", RR, True),
    ("rack == 'b' || has(route-reflector)", RACK_A, False),
    ("rack == 'x' || rack == 'a' && zone == 'z2'", RACK_A, False),  # && binds tighter
    ("(rack == 'x' || rack == 'a') && zone == 'z1'", RACK_A, True),
    ("!(rack == 'a')", RACK_A, False),
    ("! ( has(rack) && !has(zone) )", RACK_B, False),
    ("kubernetes.io/hostname == 'rr0'", RR, True),
    ("\track=='a'&&zone=='z1'", RACK_A, True),
    ("rack == 'it\"s'", {"rack": 'it"s'}, True),
    ("has( rack )", RACK_A, True),
    ("has == 'x'", {"has": "x"}, True),  # keywords are keywords only with their '('
    ("index in {'a'}", {"index": "a"}, True),  # 'in' as a word, not a prefix of a label
]


@pytest.mark.parametrize(("text", "labels", "expected"), CASES)
def test_documented_forms(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse(text).matches(labels) is expected


# (selector, position, what was expected there)
ERRORS = [
    ("rack ==", 7, "a quoted string"),
    ("rack == a", 8, "a quoted string"),
    ("rack == 'a", 8, "a closing ' for the string"),
    ("rack = 'a'", 5, "an operator after label 'rack': ==, !=, in or not in"),
    ("rack", 4, "an operator after label 'rack': ==, !=, in or not in"),
    ("rack contains 'a'", 5, "an operator after label 'rack': ==, !=, in or not in"),
    ("has(rack", 8, "')' after the label name in has("),
    ("has()", 4, "a label name"),
    ("all(x)", 4, "')' after all("),
    ("(has(a)", 7, "')'"),
    ("has(a) &&", 9, "a label name, has(, all(), '!' or '('"),
    ("has(a) & has(b)", 7, "'&&', '||' or the end of the selector"),
    ("has(a) has(b)", 7, "'&&', '||' or the end of the selector"),
    ("rack in 'a'", 8, "'{' to open a set of strings"),
    ("rack in {'a' 'b'}", 13, "',' or '}' in the set"),
    ("rack not {'a'}", 9, "'in' after 'not'"),
    ("!= 'a'", 0, "a label name"),
    ("== 'a'", 0, "a label name"),
]


@pytest.mark.parametrize(("text", "position", "expected"), ERRORS)
def test_errors_name_the_position_and_what_was_expected(text: str, position: int, expected: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    assert (info.value.position, info.value.expected) == (position, expected)
    assert str(info.value) == f"selector {text!r}: at character {position}: expected {expected}"


def test_a_label_longer_than_calicos_limit_is_refused() -> None:
    with pytest.raises(SelectorError, match="at most 512"):
        parse("has(" + "a" * 513 + ")")
    assert parse("has(" + "a" * 512 + ")").matches({"a" * 512: ""})


def test_selectors_compare_by_their_text() -> None:
    assert parse("has(a)") == parse("has(a)")
    assert parse("has(a)") != parse("has( a )")
    assert len({parse("all()"), parse("all()")}) == 1
    assert repr(parse("all()")) == "Selector('all()')"


# ------------------------------------------------------------------------- property: a model evaluator

KEYS = ["a", "b", "x.y/z"]
VALUES = ["1", "2", "it's", 'say "hi"']


@dataclass(frozen=True)
class Op:
    kind: str  # all | has | eq | ne | in | notin
    key: str = ""
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Not:
    inner: object


@dataclass(frozen=True)
class And:
    terms: tuple[object, ...]


@dataclass(frozen=True)
class Or:
    terms: tuple[object, ...]


def model(expr: object, labels: dict[str, str]) -> bool:
    """Calico's ast.go, written as plainly as possible."""
    if isinstance(expr, Not):
        return not model(expr.inner, labels)
    if isinstance(expr, And):
        return all(model(t, labels) for t in expr.terms)
    if isinstance(expr, Or):
        return any(model(t, labels) for t in expr.terms)
    assert isinstance(expr, Op)
    present = expr.key in labels
    value = labels.get(expr.key)
    return {
        "all": True,
        "has": present,
        "eq": present and value == expr.values[0],
        "ne": not present or value != expr.values[0],
        "in": present and value in expr.values,
        "notin": not present or value not in expr.values,
    }[expr.kind]


def quote(value: str, prefer_double: bool) -> str:
    if "'" in value or (prefer_double and '"' not in value):
        return f'"{value}"'
    return f"'{value}'"


def render(expr: object, draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    sp = draw(st.sampled_from(["", " ", "\t", "  "]))
    if isinstance(expr, Not):
        return f"!{sp}{render(expr.inner, draw)}"
    if isinstance(expr, (And, Or)):
        glue = f"{sp}&&{sp}" if isinstance(expr, And) else f"{sp}||{sp}"
        return f"({sp}{glue.join(render(t, draw) for t in expr.terms)}{sp})"
    assert isinstance(expr, Op)
    q = [quote(v, draw(st.booleans())) for v in expr.values]
    return {
        "all": "all()",
        "has": f"has({sp}{expr.key}{sp})",
        "eq": f"{expr.key}{sp}=={sp}{q[0] if q else ''}",
        "ne": f"{expr.key}{sp}!={sp}{q[0] if q else ''}",
        "in": f"{expr.key} in{sp}{{{sp}{', '.join(q)}{sp}}}",
        "notin": f"{expr.key} not in {{{','.join(q)}}}",
    }[expr.kind]


ops = st.builds(
    Op,
    kind=st.sampled_from(["all", "has", "eq", "ne", "in", "notin"]),
    key=st.sampled_from(KEYS),
    values=st.lists(st.sampled_from(VALUES), min_size=1, max_size=3).map(tuple),
)
exprs = st.recursive(
    ops,
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda t: And(tuple(t))),
        st.lists(inner, min_size=2, max_size=3).map(lambda t: Or(tuple(t))),
    ),
    max_leaves=8,
)
labelsets = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), expr=exprs, labels=labelsets)
def test_parsed_selectors_agree_with_the_model(
    data: st.DataObject, expr: object, labels: dict[str, str]
) -> None:
    text = render(expr, data.draw)
    selector: Selector = parse(text)
    assert selector.matches(labels) is model(expr, labels), text
