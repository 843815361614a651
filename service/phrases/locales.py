"""BCP 47 language tags: well-formedness, canonical case, and the fallback chain.

Only the subtags a spoken phrase needs are accepted: language, script, region, variants
(``en``, ``en-GB``, ``zh-Hant-TW``, ``de-CH-1996``). Extensions and private use are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

_TAG = re.compile(
    r"^(?P<language>[A-Za-z]{2,3}|[A-Za-z]{5,8})"
    r"(?:-(?P<script>[A-Za-z]{4}))?"
    r"(?:-(?P<region>[A-Za-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*)$"
)


def normalize_locale(tag: str) -> str:
    """The canonical spelling of a well-formed tag (``EN-gb`` -> ``en-GB``), else ValueError."""
    match = _TAG.match(tag.strip().replace("_", "-"))
    if match is None:
        raise ValueError(f"{tag!r} is not a BCP 47 language tag such as 'en', 'en-GB' or 'fr-CA'")
    parts = [match["language"].lower()]
    if match["script"]:
        parts.append(match["script"].title())
    if match["region"]:
        parts.append(match["region"].upper())
    parts += [v.lower() for v in match["variants"].split("-") if v]
    return "-".join(parts)


def language_of(tag: str) -> str:
    return tag.split("-", 1)[0]


class Fallback(StrEnum):
    EXACT = "exact"
    PARENT = "parent"  # a less specific tag: en-GB -> en
    SIBLING = "sibling"  # another region or script of the same language: en-GB -> en-US
    DEFAULT_LOCALE = "default_locale"  # the phrase's default locale, another language


def choose_locale(
    requested: str,
    available: Iterable[str],
    *,
    default_locale: str,
    cross_language: bool,
) -> tuple[str, Fallback] | None:
    """Pick the text's locale for a request, or None when the chain finds nothing.

    Order: the exact tag; its parents, most specific first; another tag of the same language (the
    phrase's default locale first if it is one, then alphabetical); the phrase's default locale,
    only when the phrase allows crossing languages.
    """
    have = set(available)
    if requested in have:
        return requested, Fallback.EXACT
    parts = requested.split("-")
    for end in range(len(parts) - 1, 0, -1):
        parent = "-".join(parts[:end])
        if parent in have:
            return parent, Fallback.PARENT
    language = language_of(requested)
    siblings = sorted(t for t in have if language_of(t) == language)
    if siblings:
        return (default_locale if default_locale in siblings else siblings[0]), Fallback.SIBLING
    if cross_language and default_locale in have:
        return default_locale, Fallback.DEFAULT_LOCALE
    return None
