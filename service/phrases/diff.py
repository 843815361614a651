"""Diff of two versions of a phrase: per locale, and the other content that differs."""

from __future__ import annotations

import difflib
from typing import Any

from service.phrases.models import PhraseVersion
from service.phrases.service import texts_of


def diff_versions(
    key: str, new: PhraseVersion, old: PhraseVersion
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    old_texts, new_texts = texts_of(old), texts_of(new)
    locales = []
    for locale in sorted(set(old_texts) | set(new_texts)):
        before, after = old_texts.get(locale), new_texts.get(locale)
        change = (
            "added"
            if before is None
            else "removed"
            if after is None
            else "unchanged"
            if before == after
            else "changed"
        )
        lines = difflib.unified_diff(
            (before or "").splitlines(),
            (after or "").splitlines(),
            fromfile=f"{key}/{old.number}/{locale}",
            tofile=f"{key}/{new.number}/{locale}",
            lineterm="",
        )
        locales.append({"locale": locale, "change": change, "diff": "\n".join(lines)})
    fields = []
    for name in ("variables", "change_note", "effective_from", "effective_until"):
        before_value, after_value = getattr(old, name), getattr(new, name)
        if before_value != after_value:
            fields.append({"field": name, "before": before_value, "after": after_value})
    return locales, fields
