"""Settings from the environment: every problem named by its variable, nothing else refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from proxy.settings import (
    BypassSettings,
    EnvironReading,
    EnvironSource,
    ManagementSettings,
    SecretFileSource,
    Settings,
    SettingsError,
    did_you_mean,
    load_settings,
    setting_names,
    weak_secret_warnings,
)


@pytest.mark.parametrize(
    "variable",
    [
        "MWM_SERVICE_HOST",
        "MWM_SERVICE_PORT",
        "MWM_SERVICE_PORT_HTTP",
        "MWM_PORT",
        "MWM_PORT_80_TCP",
        "MWM_PORT_80_TCP_ADDR",
        "MWM_MAINTENANCE_WINDOW_MANAGER_SERVICE_HOST",
        "MWM_MAINTENANCE_WINDOW_MANAGER_PORT_8081_TCP_PROTO",
    ],
)
def test_kubernetes_service_links_are_not_settings(variable: str) -> None:
    settings = load_settings({variable: "10.0.0.1", "MWM_UPSTREAM__URL": "http://app:8000"})
    assert str(settings.upstream.url) == "http://app:8000/"


@pytest.mark.parametrize(
    "variable",
    ["MWM_UPSTREAM_URL", "MWM_UPSTRAEM__URL", "MWM_LISTEN__PUBLIC_PROT", "MWM_TOKEN"],
)
def test_typos_are_refused_by_name(variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: "x"})
    assert any(problem.startswith(variable.split("__")[0]) for problem in caught.value.problems)


def test_every_problem_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "MWM_LISTEN__PUBLIC_PORT": "70000",
                "MWM_UPSTREAM__URL": "ftp://x",
                "MWM_PAGE__RETRY_AFTER_S": "-1",
            }
        )
    names = sorted(p.split(":")[0] for p in caught.value.problems)
    assert names == ["MWM_LISTEN__PUBLIC_PORT", "MWM_PAGE__RETRY_AFTER_S", "MWM_UPSTREAM__URL"]


def test_unknown_variables_are_listed_with_every_other_problem() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"MWM_UPSTRAEM__URL": "http://app", "MWM_LISTEN__PUBLIC_PORT": "70000"})
    assert caught.value.problems == [
        "MWM_UPSTRAEM__URL: unknown setting (did you mean MWM_UPSTREAM__URL?)",
        "MWM_LISTEN__PUBLIC_PORT: Input should be less than or equal to 65535",
    ]


def test_the_process_environment_is_read_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-settings would skip a misspelt group without a word.
    monkeypatch.setenv("MWM_UPSTRAEM__URL", "http://app")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == [
        "MWM_UPSTRAEM__URL: unknown setting (did you mean MWM_UPSTREAM__URL?)"
    ]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("MWM_UPSTREAM_URL", "MWM_UPSTREAM__URL"),
        ("MWM_SOURCE__LOCAL_FILE", "MWM_SOURCE__LOCAL__FILE"),
        ("MWM_BYPASS__ALLOWED_CIDRS", "MWM_BYPASS__ALLOW_CIDRS"),
        ("MWM_ADMIN_TOKEN", "MWM_MANAGEMENT__ADMIN_TOKEN"),
        ("MWM_UPSTREAM", "MWM_UPSTREAM__URL"),
        ("MWM_ENABLED", "MWM_SOURCE__LEADER_ELECTION__ENABLED or MWM_SOURCE__STATUS__ENABLED"),
    ],
)
def test_did_you_mean(typed: str, meant: str) -> None:
    assert did_you_mean(typed) == f" (did you mean {meant}?)"
    assert typed not in setting_names()
    assert set(meant.split(" or ")) <= setting_names()


def test_nothing_is_suggested_when_nothing_is_close() -> None:
    assert did_you_mean("MWM_COLOUR") == ""


@pytest.mark.parametrize(
    ("group", "field"),
    [("bypass", "token"), ("bypass", "cookie_secret"), ("management", "admin_token")],
)
def test_a_secret_given_directly_and_as_a_file_is_refused(
    tmp_path: Path, group: str, field: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123", encoding="utf-8")
    variable = f"MWM_{group.upper()}__{field.upper()}"
    with pytest.raises(SettingsError) as caught:
        # A bad value elsewhere in the same group does not hide the clash.
        load_settings(
            {
                variable: "another-secret-0123456789",
                f"{variable}_FILE": str(secret),
                "MWM_BYPASS__COOKIE_LIFETIME_S": "1",
            }
        )
    assert caught.value.problems[0] == (
        f"{variable}_FILE: set together with {variable}; set only one of the two"
    )
    assert len(caught.value.problems) == 2
    # Built in code instead of from the environment: the same refusal.
    model = {"bypass": BypassSettings, "management": ManagementSettings}[group]
    with pytest.raises(ValidationError, match=f"set together with {variable}"):
        model.model_validate({field: "another-secret-0123456789", f"{field}_file": str(secret)})


def test_a_secret_file_alone_and_an_empty_variable_are_fine(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-the-file-0123456789\n", encoding="utf-8")
    settings = load_settings({"MWM_BYPASS__TOKEN": "", "MWM_BYPASS__TOKEN_FILE": str(secret)})
    assert settings.bypass.token is not None
    assert settings.bypass.token.get_secret_value() == "from-the-file-0123456789"


def test_every_bad_network_is_named_and_numbers_are_not_networks() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"MWM_BYPASS__ALLOW_CIDRS": '["10.0.0.0/8", "office", 1, "::1/129"]'})
    assert caught.value.problems == [
        "MWM_BYPASS__ALLOW_CIDRS: not an address or CIDR block: 'office', 1, '::1/129' "
        "(write them like 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32)"
    ]


@pytest.mark.parametrize("text", ["['/admin']", '["/admin",', "[/admin]"])
def test_a_broken_json_list_is_explained(text: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"MWM_BYPASS__PATH_PREFIXES": text})
    [problem] = caught.value.problems
    assert problem.startswith("MWM_BYPASS__PATH_PREFIXES: starts with '[' but is not a JSON list")
    assert problem.endswith('write ["a","b"] with double quotes, or a,b without brackets')
    assert "Expecting" not in problem


def test_every_bad_path_prefix_is_named() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"MWM_BYPASS__PATH_PREFIXES": "/admin,ops,/a%zz,/x%2Fy"})
    [problem] = caught.value.problems
    assert problem.startswith("MWM_BYPASS__PATH_PREFIXES: 'ops' is not a usable path: ")
    for bad in ("'ops'", "'/a%zz'", "'/x%2Fy'"):
        assert f"{bad} is not a usable path" in problem
    assert "'/admin'" not in problem


def test_short_tokens_are_warned_about_by_variable_never_by_value(tmp_path: Path) -> None:
    admin = tmp_path / "admin"
    admin.write_text("admin-15-chars!", encoding="utf-8")
    settings = load_settings(
        {"MWM_BYPASS__TOKEN": "0123456789abcdef", "MWM_MANAGEMENT__ADMIN_TOKEN_FILE": str(admin)}
    )
    [warning] = weak_secret_warnings(settings)
    assert warning.startswith(f"MWM_MANAGEMENT__ADMIN_TOKEN_FILE: the token in {admin} is shorter")
    assert "admin-15-chars!" not in warning
    assert weak_secret_warnings(load_settings({})) == []


def _without_mwm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MWM_"):
            monkeypatch.delenv(name)


def test_the_loader_is_pydantic_settings_with_its_own_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert BaseSettings in Settings.__mro__
    assert issubclass(EnvironSource, EnvSettingsSource)
    assert issubclass(SecretFileSource, PydanticBaseSettingsSource)
    called: list[str] = []
    for source in (EnvironSource, SecretFileSource):

        def spy(self: Any, original: Any = source.__call__) -> Any:
            called.append(type(self).__name__)
            return original(self)

        monkeypatch.setattr(source, "__call__", spy)
    secret = tmp_path / "token"
    secret.write_text("from-the-file-0123456789", encoding="utf-8")
    settings = load_settings(
        {"MWM_UPSTREAM__URL": "http://app:8000", "MWM_BYPASS__TOKEN_FILE": str(secret)}
    )
    assert called == ["EnvironSource", "SecretFileSource"]
    assert str(settings.upstream.url) == "http://app:8000/"
    assert settings.bypass.token is not None
    assert settings.bypass.token.get_secret_value() == "from-the-file-0123456789"
    assert settings.bypass.token_file == secret


def test_each_source_reads_its_own_variables(tmp_path: Path) -> None:
    reading = EnvironReading(
        {
            "MWM_UPSTREAM__URL": "http://app:8000",
            "MWM_SOURCE__LOCAL__FILE": "/state.yaml",
            "MWM_MANAGEMENT__ADMIN_TOKEN_FILE": "/secrets/admin",
            "MWM_PORT_8080_TCP": "tcp://10.0.0.1:8080",
            "MWM_MANAGEMENT_URL": "http://127.0.0.1:8081",
            "PATH": "/usr/bin",
        }
    )
    assert reading.problems == []
    assert EnvironSource(Settings, reading)() == {
        "upstream": {"url": "http://app:8000"},
        "source": {"local": {"file": "/state.yaml"}},
    }
    assert SecretFileSource(Settings, reading)() == {
        "management": {"admin_token_file": "/secrets/admin"}
    }


def test_a_mapping_is_read_alone_never_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MWM_UPSTREAM__URL", "http://from-the-process:1")
    monkeypatch.setenv("MWM_UPSTRAEM__URL", "http://a-typo-elsewhere")
    settings = load_settings({"MWM_LISTEN__PUBLIC_PORT": "9000"})
    assert str(settings.upstream.url) == "http://127.0.0.1:8000/"
    assert settings.listen.public_port == 9000


def test_settings_built_directly_read_the_process_environment_just_as_strictly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_mwm_variables(monkeypatch)
    monkeypatch.setenv("MWM_UPSTREAM__URL", "http://from-the-process:1")
    assert str(Settings().upstream.url) == "http://from-the-process:1/"
    monkeypatch.setenv("MWM_UPSTRAEM__URL", "http://app")
    with pytest.raises(SettingsError, match="did you mean MWM_UPSTREAM__URL"):
        Settings()


def test_overrides_win_over_the_variables_of_their_group() -> None:
    settings = load_settings(
        {"MWM_UPSTREAM__URL": "http://app:8000", "MWM_UPSTREAM__POOL_SIZE": "7"},
        upstream={"pool_size": 5},
    )
    assert str(settings.upstream.url) == "http://app:8000/"
    assert settings.upstream.pool_size == 5


def test_the_prefix_stays_upper_case_and_null_stays_a_string() -> None:
    # pydantic-settings matches names case-insensitively; the prefix is still MWM_ exactly.
    settings = load_settings({"mwm_upstream__url": "http://app:8000", "MWM_PAGE__CONTACT": "null"})
    assert str(settings.upstream.url) == "http://127.0.0.1:8000/"
    assert settings.page.contact == "null"


@pytest.mark.parametrize(("value", "expected"), [("0", None), ("", None), ("15", 15)])
def test_the_page_refresh_is_on_by_default_and_0_or_empty_switches_it_off(
    value: str, expected: int | None
) -> None:
    assert load_settings({}).page.refresh_s == 60
    assert load_settings({"MWM_PAGE__REFRESH_S": value}).page.refresh_s == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MWM_PAGE__REFRESH_S", "-1"),
        ("MWM_PAGE__REFRESH_S", "soon"),
        ("MWM_PAGE__RETURN_SPREAD_S", "-0.5"),
        ("MWM_PAGE__DEFAULT_LANGUAGE", "klingon"),
        ("MWM_PAGE__DEFAULT_LANGUAGE", "../../etc"),
    ],
)
def test_bad_page_settings_are_named(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({variable: value})

    [problem] = raised.value.problems
    assert problem.startswith(f"{variable}: ")


def test_the_default_language_is_a_lower_case_tag_with_a_catalog() -> None:
    assert load_settings({}).page.default_language == "en"
    assert load_settings({"MWM_PAGE__DEFAULT_LANGUAGE": "DE"}).page.default_language == "de"
