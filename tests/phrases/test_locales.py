from __future__ import annotations

import pytest

from service.phrases.locales import Fallback, choose_locale, normalize_locale


class TestNormalizeLocale:
    @pytest.mark.parametrize(
        ("tag", "canonical"),
        [
            ("en", "en"),
            ("EN", "en"),
            ("en-gb", "en-GB"),
            ("EN-gb", "en-GB"),
            ("en_GB", "en-GB"),
            (" fr-ca ", "fr-CA"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("SR-LATN", "sr-Latn"),
            ("es-419", "es-419"),
            ("de-ch-1996", "de-CH-1996"),
            ("sl-IT-ROZAJ", "sl-IT-rozaj"),
        ],
    )
    def test_well_formed_tag_is_spelled_canonically(self, tag: str, canonical: str) -> None:
        assert normalize_locale(tag) == canonical

    def test_canonical_spelling_is_stable(self) -> None:
        for tag in ("en-GB", "zh-Hant-TW", "de-CH-1996", "es-419"):
            assert normalize_locale(normalize_locale(tag)) == tag

    @pytest.mark.parametrize(
        "tag",
        [
            "",
            "   ",
            "e",
            "en-",
            "-en",
            "en--GB",
            "en GB",
            "en-GBR",
            "en-Latn-Latn",
            "en-GB-x-private",
            "x-private",
            "i-klingon",
            "en-GB-u-ca-buddhist",
            "12",
            "englishlanguage",
            "en-GB;q=0.9",
            "fr\u00e9",
        ],
    )
    def test_malformed_tag_is_refused(self, tag: str) -> None:
        with pytest.raises(ValueError, match="BCP 47"):
            normalize_locale(tag)


class TestChooseLocale:
    def test_exact_tag_wins_over_its_parent(self) -> None:
        chosen = choose_locale(
            "en-GB", ["en", "en-GB", "en-US"], default_locale="en-US", cross_language=False
        )
        assert chosen == ("en-GB", Fallback.EXACT)

    def test_parent_is_used_when_the_region_is_missing(self) -> None:
        chosen = choose_locale(
            "en-GB", ["en", "en-US"], default_locale="en-US", cross_language=False
        )
        assert chosen == ("en", Fallback.PARENT)

    def test_most_specific_parent_comes_first(self) -> None:
        available = ["zh", "zh-Hant", "zh-Hans-CN"]
        chosen = choose_locale("zh-Hant-TW", available, default_locale="zh", cross_language=False)
        assert chosen == ("zh-Hant", Fallback.PARENT)
        chosen = choose_locale("zh-Hant-TW", ["zh"], default_locale="zh", cross_language=False)
        assert chosen == ("zh", Fallback.PARENT)

    def test_sibling_prefers_the_phrases_default_locale(self) -> None:
        available = ["en-GB", "en-US", "fr-FR"]
        chosen = choose_locale("en-AU", available, default_locale="en-US", cross_language=False)
        assert chosen == ("en-US", Fallback.SIBLING)

    def test_sibling_is_alphabetical_when_the_default_is_another_language(self) -> None:
        available = ["en-US", "fr-FR", "en-GB"]
        chosen = choose_locale("en-AU", available, default_locale="fr-FR", cross_language=True)
        assert chosen == ("en-GB", Fallback.SIBLING)

    def test_other_language_is_refused_without_cross_language_fallback(self) -> None:
        chosen = choose_locale(
            "fr-CA", ["en-US", "de-DE"], default_locale="en-US", cross_language=False
        )
        assert chosen is None

    def test_other_language_falls_back_to_default_locale_when_allowed(self) -> None:
        chosen = choose_locale(
            "fr-CA", ["de-DE", "en-US"], default_locale="en-US", cross_language=True
        )
        assert chosen == ("en-US", Fallback.DEFAULT_LOCALE)

    def test_language_is_a_whole_subtag_not_a_prefix(self) -> None:
        chosen = choose_locale("en-GB", ["enm", "fr"], default_locale="fr", cross_language=False)
        assert chosen is None
