"""What the property tests share: bounded, reproducible Hypothesis settings and small strategies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st

# Seeded (derandomize: the same examples every run, no example database written) and bounded.
BOUNDED = settings(max_examples=100, derandomize=True, deadline=None, database=None)

BASE = datetime(2026, 1, 1, tzinfo=UTC)

# Instants on a coarse grid, so that windows meet, overlap and touch at their edges.
instants = st.integers(0, 40).map(lambda minutes: BASE + timedelta(minutes=minutes))

LANGUAGES = ("en", "fr", "de")
SCRIPTS = ("Latn", "Cyrl")
REGIONS = ("US", "GB", "CA", "FR", "CH")


@st.composite
def locales(draw: st.DrawFn) -> str:
    """Canonical BCP 47 tags of a few languages: en, en-GB, fr-Latn-CA, de-CH-1996, ..."""
    parts = [draw(st.sampled_from(LANGUAGES))]
    if draw(st.integers(0, 4)) == 0:
        parts.append(draw(st.sampled_from(SCRIPTS)))
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(REGIONS)))
    if draw(st.integers(0, 5)) == 0:
        parts.append("1996")
    return "-".join(parts)


# Text a database column can hold (no lone surrogates; the API refuses U+0000 before it gets here).
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
