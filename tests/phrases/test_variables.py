from __future__ import annotations

import pytest

from service.phrases.variables import DEFAULT_MAX_LENGTH, Variable, check_texts, render

NAME = Variable("name")


class TestCheckTexts:
    def test_text_using_every_declared_variable_is_clean(self) -> None:
        texts = {"en-US": "Hello {{name}}.", "fr-FR": "Bonjour {{ name }}."}
        assert check_texts(texts, [NAME]) == []

    def test_text_without_placeholders_and_no_variables_is_clean(self) -> None:
        assert check_texts({"en-US": "This call is recorded {not a placeholder}."}, []) == []

    def test_undeclared_placeholder_is_a_problem(self) -> None:
        problems = check_texts({"en-US": "Hello {{name}}, account {{account}}."}, [NAME])
        assert problems == ["texts.en-US: placeholder {{account}} is not declared"]

    def test_declared_variable_unused_in_one_locale_is_named_for_that_locale(self) -> None:
        problems = check_texts({"en-US": "Hello {{name}}.", "fr-FR": "Bonjour."}, [NAME])
        assert len(problems) == 1
        assert problems[0].startswith("texts.fr-FR:")
        assert "'name'" in problems[0]
        assert "not used" in problems[0]

    @pytest.mark.parametrize(
        "text",
        [
            "Hello {{name}",
            "Hello name}}",
            "Hello {{ }}",
            "Hello {{1st}}",
            "Hello {{na-me}}",
            "Hello {{name}} and {{",
            "Hello {{{name}}}",
            "Hello {{name}}}",
        ],
    )
    def test_malformed_placeholder_is_a_problem(self, text: str) -> None:
        problems = check_texts({"en-US": text}, [])
        assert any("malformed placeholder" in p for p in problems), problems

    def test_invalid_regex_is_a_problem(self) -> None:
        problems = check_texts({"en-US": "Hi {{name}}"}, [Variable("name", pattern="[a-z")])
        assert len(problems) == 1
        assert problems[0].startswith("variables.name.pattern: not a valid regex")

    def test_variable_declared_twice_is_a_problem(self) -> None:
        problems = check_texts({"en-US": "Hi {{name}}"}, [NAME, Variable("name", max_length=5)])
        assert "variables: a name is declared twice" in problems

    def test_every_problem_is_reported_at_once(self) -> None:
        problems = check_texts(
            {"en-US": "Hi {{who}} {{", "fr-FR": "Salut {{name}}"},
            [NAME, Variable("code", pattern="(")],
        )
        assert len(problems) == 6, problems
        assert problems[0].startswith("variables.code.pattern:")
        assert "texts.en-US: malformed placeholder (use {{name}})" in problems
        assert "texts.en-US: placeholder {{who}} is not declared" in problems
        assert "texts.fr-FR: declared variable 'code' is not used" in problems


class TestRender:
    def test_placeholders_are_replaced_everywhere(self) -> None:
        text = "Hello {{name}}. Yes, {{ name }}, account {{account}}."
        variables = [NAME, Variable("account", pattern=r"\d{4}")]
        rendered = render(text, variables, {"name": "Ann", "account": "1234"})
        assert rendered == "Hello Ann. Yes, Ann, account 1234."

    def test_value_that_looks_like_a_placeholder_is_spoken_literally(self) -> None:
        text = "Hello {{name}}, account {{account}}."
        rendered = render(
            text, [NAME, Variable("account")], {"name": "{{account}}", "account": "9"}
        )
        assert rendered == "Hello {{account}}, account 9."

    def test_value_with_backslashes_is_not_a_regex_template(self) -> None:
        assert render("Hi {{name}}", [NAME], {"name": r"\1 \g<0>"}) == r"Hi \1 \g<0>"

    def test_missing_value_is_refused(self) -> None:
        with pytest.raises(ValueError, match="missing value for variable 'name'"):
            render("Hi {{name}}", [NAME], {})

    def test_unknown_value_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown variable 'nmae'"):
            render("Hi {{name}}", [NAME], {"name": "Ann", "nmae": "Ann"})

    def test_value_longer_than_its_max_length_is_refused(self) -> None:
        variables = [Variable("name", max_length=3)]
        assert render("Hi {{name}}", variables, {"name": "Ann"}) == "Hi Ann"
        with pytest.raises(ValueError, match="longer than 3 characters"):
            render("Hi {{name}}", variables, {"name": "Anna"})

    def test_value_longer_than_the_default_limit_is_refused(self) -> None:
        ok = "a" * DEFAULT_MAX_LENGTH
        assert render("{{name}}", [NAME], {"name": ok}) == ok
        with pytest.raises(ValueError, match=f"longer than {DEFAULT_MAX_LENGTH} characters"):
            render("{{name}}", [NAME], {"name": ok + "a"})

    def test_pattern_must_match_the_whole_value(self) -> None:
        variables = [Variable("code", pattern=r"\d{4}")]
        assert render("Code {{code}}", variables, {"code": "0042"}) == "Code 0042"
        for bad in ("12345", "123", "12a4", "1234\n"):
            with pytest.raises(ValueError, match="does not match its pattern"):
                render("Code {{code}}", variables, {"code": bad})

    def test_every_bad_value_is_named(self) -> None:
        variables = [NAME, Variable("code", pattern=r"\d+")]
        with pytest.raises(ValueError, match="missing value") as caught:
            render("{{name}} {{code}}", variables, {"code": "x", "extra": "y"})
        message = str(caught.value)
        assert "unknown variable 'extra'" in message
        assert "variable 'code' does not match its pattern" in message
