"""Declared variables: ``{{name}}`` placeholders in the text, checked when a draft is saved and
rendered when a phrase is spoken. Values are substituted in one pass, so a value that itself looks
like a placeholder is spoken literally, never expanded."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
DEFAULT_MAX_LENGTH = 200


@dataclass(frozen=True)
class Variable:
    name: str
    pattern: str | None = None
    max_length: int | None = None


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def _malformed(text: str) -> bool:
    """Braces that are not exactly one placeholder: ``{{x}`` or ``{{{x}}}`` would be spoken with a
    stray brace. Placeholders become a marker; any double brace, or a brace touching a marker,
    is left over from a mistake."""
    marked = PLACEHOLDER.sub("\x00", text)
    return any(bad in marked for bad in ("{{", "}}", "{\x00", "\x00}"))


def check_texts(texts: Mapping[str, str], variables: Sequence[Variable]) -> list[str]:
    """Every problem with the placeholders of a version's texts; empty when all is well.

    Each locale's text must use every declared variable and no undeclared one: a translation that
    drops the customer's name, or names one nobody supplies, is a defect.
    """
    problems: list[str] = []
    declared = [v.name for v in variables]
    if len(set(declared)) != len(declared):
        problems.append("variables: a name is declared twice")
    for variable in variables:
        if variable.pattern is not None:
            try:
                re.compile(variable.pattern)
            except re.error as exc:
                problems.append(f"variables.{variable.name}.pattern: not a valid regex ({exc})")
    for locale, text in sorted(texts.items()):
        used = set(placeholders(text))
        if _malformed(text):
            problems.append(f"texts.{locale}: malformed placeholder (use {{{{name}}}})")
        for name in sorted(used - set(declared)):
            problems.append(f"texts.{locale}: placeholder {{{{{name}}}}} is not declared")
        for name in sorted(set(declared) - used):
            problems.append(f"texts.{locale}: declared variable {name!r} is not used")
    return problems


def render(text: str, variables: Sequence[Variable], values: Mapping[str, str]) -> str:
    """The text with every placeholder replaced; ValueError naming each bad or missing value."""
    by_name = {v.name: v for v in variables}
    problems = [f"unknown variable {name!r}" for name in sorted(set(values) - set(by_name))]
    for name, variable in sorted(by_name.items()):
        if name not in values:
            problems.append(f"missing value for variable {name!r}")
            continue
        value = values[name]
        limit = variable.max_length or DEFAULT_MAX_LENGTH
        if len(value) > limit:
            problems.append(f"variable {name!r} is longer than {limit} characters")
        if variable.pattern is not None and re.fullmatch(variable.pattern, value) is None:
            problems.append(f"variable {name!r} does not match its pattern")
    if problems:
        raise ValueError("; ".join(problems))
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
