"""Resolution by effective window and locale chain (service.phrases.resolution, .locales), against
a plain model of the rules: which approved version is in force at an instant, and which of its
texts a locale gets, never crossing language unless the phrase allows it."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.phrases import errors
from service.phrases.locales import Fallback, choose_locale, language_of, normalize_locale
from service.phrases.resolution import PhraseSnapshot, VersionSnapshot, resolve_in
from tests.properties.support import BOUNDED, instants, locales, texts


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@st.composite
def versions(draw: st.DrawFn, number: int) -> VersionSnapshot:
    approved_at = draw(instants)
    effective_from = draw(st.none() | instants)
    effective_until = draw(st.none() | instants)
    if (
        effective_from is not None
        and effective_until is not None
        and effective_until <= effective_from
    ):
        effective_until = None  # the API refuses an empty window
    retired_at = draw(st.none() | instants.filter(lambda t: t >= approved_at))
    tags = draw(st.lists(locales(), min_size=1, max_size=4, unique=True))
    by_locale = {tag: draw(texts) for tag in tags}
    return VersionSnapshot(
        number=number,
        texts=by_locale,
        sha256={tag: _sha(text) for tag, text in by_locale.items()},
        variables=[],
        effective_from=effective_from,
        effective_until=effective_until,
        approved_at=approved_at,
        retired_at=retired_at,
    )


@st.composite
def phrases(draw: st.DrawFn) -> PhraseSnapshot:
    numbers = sorted(draw(st.sets(st.integers(1, 9), max_size=5)))
    in_force = tuple(draw(versions(n)) for n in numbers)
    drafts = draw(st.sets(st.integers(10, 12), max_size=2))
    statuses = {v.number: "retired" if v.retired_at else "approved" for v in in_force}
    statuses |= dict.fromkeys(drafts, "draft")
    return PhraseSnapshot(
        key="recording",
        default_locale=draw(locales()),
        cross_language_fallback=draw(st.booleans()),
        versions=in_force,
        statuses=statuses,
    )


def model_in_force(version: VersionSnapshot, at: datetime) -> bool:
    """In force: from its effective start (its approval if none, and never before it) until its
    effective end or its retirement, whichever is first."""
    start = version.effective_from or version.approved_at
    if at < start or at < version.approved_at:
        return False
    return all(end is None or at < end for end in (version.effective_until, version.retired_at))


def model_version(phrase: PhraseSnapshot, at: datetime) -> VersionSnapshot | None:
    """Of the versions in force, the one whose declared start is latest (then the highest
    number)."""
    best = None
    for v in phrase.versions:
        if model_in_force(v, at):
            key = (v.effective_from or v.approved_at, v.number)
            if best is None or key > (best.effective_from or best.approved_at, best.number):
                best = v
    return best


class TestVersionInForce:
    @BOUNDED
    @given(phrase=phrases(), at=instants)
    def test_the_version_answered_is_the_models(self, phrase: PhraseSnapshot, at: datetime) -> None:
        expected = model_version(phrase, at)
        try:
            resolved = resolve_in(phrase, locale=None, at=at)
        except errors.NoVersionInForce:
            assert expected is None
            return
        except errors.LocaleNotAvailable:
            assert expected is not None
            return
        assert resolved.version is expected
        assert model_in_force(resolved.version, at)

    @BOUNDED
    @given(phrase=phrases(), at=instants, data=st.data())
    def test_a_pinned_version_answers_only_within_its_window(
        self, phrase: PhraseSnapshot, at: datetime, data: st.DataObject
    ) -> None:
        known = st.sampled_from(sorted(phrase.statuses)) if phrase.statuses else st.nothing()
        number = data.draw(known | st.integers(1, 13))
        try:
            resolved = resolve_in(phrase, locale=None, at=at, version_number=number)
        except errors.VersionNotFound:
            assert number not in phrase.statuses
            return
        except errors.NoVersionInForce:
            pinned = next((v for v in phrase.versions if v.number == number), None)
            assert pinned is None or not model_in_force(pinned, at)
            assert number in phrase.statuses
            return
        except errors.LocaleNotAvailable:
            return
        assert resolved.version.number == number
        assert model_in_force(resolved.version, at)

    @BOUNDED
    @given(phrase=phrases(), at=instants, requested=locales())
    def test_text_and_hash_are_the_versions_own(
        self, phrase: PhraseSnapshot, at: datetime, requested: str
    ) -> None:
        try:
            resolved = resolve_in(phrase, locale=requested, at=at)
        except (errors.NoVersionInForce, errors.LocaleNotAvailable):
            return
        assert resolved.text == resolved.version.texts[resolved.locale]
        assert resolved.sha256 == _sha(resolved.text)
        assert resolved.requested_locale == requested


class TestLocaleChain:
    @BOUNDED
    @given(
        requested=locales(),
        available=st.lists(locales(), min_size=1, max_size=5, unique=True),
        default=locales(),
        cross=st.booleans(),
    )
    def test_the_chain_never_crosses_language_unless_allowed(
        self, requested: str, available: list[str], default: str, cross: bool
    ) -> None:
        choice = choose_locale(requested, available, default_locale=default, cross_language=cross)
        same_language = [t for t in available if language_of(t) == language_of(requested)]
        if choice is None:
            assert not same_language
            assert not (cross and default in available)
            return
        chosen, fallback = choice
        assert chosen in available
        if fallback is Fallback.DEFAULT_LOCALE:
            assert cross
            assert chosen == default
            assert not same_language
        else:
            assert language_of(chosen) == language_of(requested)

    @BOUNDED
    @given(
        requested=locales(),
        available=st.lists(locales(), min_size=1, max_size=5, unique=True),
        default=locales(),
        cross=st.booleans(),
    )
    def test_the_closest_text_wins(
        self, requested: str, available: list[str], default: str, cross: bool
    ) -> None:
        """Exact tag, else the most specific parent, else the default locale if it is of the
        language, else the first of the language alphabetically."""
        choice = choose_locale(requested, available, default_locale=default, cross_language=cross)
        parts = requested.split("-")
        parents = ["-".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)]
        if requested in available:
            assert choice == (requested, Fallback.EXACT)
        elif any(p in available for p in parents):
            assert choice == (next(p for p in parents if p in available), Fallback.PARENT)
        elif same := sorted(t for t in available if language_of(t) == language_of(requested)):
            assert choice == (default if default in same else same[0], Fallback.SIBLING)

    @BOUNDED
    @given(
        requested=locales(),
        available=st.lists(locales(), min_size=1, max_size=5, unique=True),
        default=locales(),
        cross=st.booleans(),
        order=st.randoms(use_true_random=False),
    )
    def test_the_order_texts_are_stored_in_does_not_matter(
        self, requested: str, available: list[str], default: str, cross: bool, order: object
    ) -> None:
        shuffled = list(available)
        order.shuffle(shuffled)  # type: ignore[attr-defined]
        assert choose_locale(
            requested, available, default_locale=default, cross_language=cross
        ) == choose_locale(requested, shuffled, default_locale=default, cross_language=cross)

    @BOUNDED
    @given(tag=locales(), upper=st.lists(st.booleans(), min_size=20, max_size=20))
    def test_a_tag_is_the_same_tag_in_any_case_or_with_underscores(
        self, tag: str, upper: list[bool]
    ) -> None:
        spelled = "".join(c.upper() if up else c.lower() for c, up in zip(tag, upper, strict=False))
        spelled += tag[len(upper) :]
        assert normalize_locale(spelled) == tag
        assert normalize_locale(spelled.replace("-", "_")) == tag
        assert normalize_locale(normalize_locale(spelled)) == normalize_locale(spelled)

    @pytest.mark.parametrize(
        "tag", ["", "-", "e", "en-US-u-ca-gregory", "en-", "en--US", "x-private"]
    )
    def test_what_is_no_tag_is_refused(self, tag: str) -> None:
        with pytest.raises(ValueError, match="BCP 47"):
            normalize_locale(tag)
