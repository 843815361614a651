"""Variable rendering (service.phrases.variables): a text made of literal runs and ``{{name}}``
placeholders renders as the same runs with each value in its place, in one pass (a value that
looks like a placeholder is spoken as it is), and refuses exactly the values that break a rule."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.phrases.variables import DEFAULT_MAX_LENGTH, Variable, check_texts, render
from tests.properties.support import BOUNDED, texts

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
# Literal runs: no braces at all, so the only placeholders are the ones the test puts in.
literals = texts.map(lambda t: t.replace("{", "(").replace("}", ")"))
# Values: anything storable, braces and placeholder look-alikes included.
values = st.one_of(texts, names.map(lambda n: "{{" + n + "}}"), st.just("\\1 \\g<0> $1"))
spacing = st.sampled_from(["", " ", "  "])


@st.composite
def templates(draw: st.DrawFn) -> tuple[list[str | tuple[str]], list[str]]:
    """Segments (a literal run, or a 1-tuple naming a placeholder) and the declared names, each
    used at least once."""
    declared = draw(st.lists(names, min_size=0, max_size=4, unique=True))
    uses = declared + draw(st.lists(st.sampled_from(declared), max_size=3)) if declared else []
    uses = draw(st.permutations(uses))
    segments: list[str | tuple[str]] = [draw(literals)]
    for name in uses:
        segments += [(name,), draw(literals)]
    return segments, declared


def spell(segments: list[str | tuple[str]], pad: str) -> str:
    return "".join(s if isinstance(s, str) else "{{" + pad + s[0] + pad + "}}" for s in segments)


class TestRender:
    @BOUNDED
    @given(template=templates(), pad=spacing, data=st.data())
    def test_each_placeholder_becomes_its_value_and_nothing_else_changes(
        self, template: tuple[list[str | tuple[str]], list[str]], pad: str, data: st.DataObject
    ) -> None:
        segments, declared = template
        given_values = {name: data.draw(values.filter(lambda v: len(v) <= 40)) for name in declared}
        variables = [Variable(name, max_length=40) for name in declared]
        rendered = render(spell(segments, pad), variables, given_values)
        expected = "".join(s if isinstance(s, str) else given_values[s[0]] for s in segments)
        assert rendered == expected

    @BOUNDED
    @given(template=templates(), pad=spacing)
    def test_a_text_that_uses_exactly_its_declared_variables_is_clean(
        self, template: tuple[list[str | tuple[str]], list[str]], pad: str
    ) -> None:
        segments, declared = template
        variables = [Variable(name) for name in declared]
        text = spell(segments, pad)
        assert check_texts({"en-US": text, "fr-FR": text}, variables) == []

    @BOUNDED
    @given(template=templates(), extra=names)
    def test_an_undeclared_or_unused_variable_is_named(
        self, template: tuple[list[str | tuple[str]], list[str]], extra: str
    ) -> None:
        segments, declared = template
        text = spell(segments, "")
        if extra in declared:
            problems = check_texts({"en-US": text}, [Variable(n) for n in declared if n != extra])
            assert problems == [f"texts.en-US: placeholder {{{{{extra}}}}} is not declared"]
        else:
            problems = check_texts({"en-US": text}, [Variable(n) for n in [*declared, extra]])
            assert problems == [f"texts.en-US: declared variable {extra!r} is not used"]

    @BOUNDED
    @given(
        value=texts,
        max_length=st.none() | st.integers(1, 30),
        pattern=st.none() | st.sampled_from([r"[A-Za-z ]+", r"\d{1,4}", r".*"]),
        extra=st.booleans(),
        missing=st.booleans(),
    )
    def test_exactly_the_values_that_break_a_rule_are_refused(
        self, value: str, max_length: int | None, pattern: str | None, extra: bool, missing: bool
    ) -> None:
        variables = [Variable("name", pattern=pattern, max_length=max_length)]
        given_values = {} if missing else {"name": value}
        if extra:
            given_values["other"] = "x"
        limit = max_length or DEFAULT_MAX_LENGTH
        breaks = (
            missing
            or extra
            or len(value) > limit
            or (pattern is not None and re.fullmatch(pattern, value) is None)
        )
        if breaks:
            with pytest.raises(ValueError, match="variable"):
                render("Hello {{name}}.", variables, given_values)
        else:
            assert render("Hello {{name}}.", variables, given_values) == f"Hello {value}."
