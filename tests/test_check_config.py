"""``mwm check-config`` catches the mistakes that otherwise pass silently.

Run as a process, exactly as an operator does; every line they see is asserted.

Promises:

- Errors (exit 2) and warnings (exit 0, ``configuration OK, N warnings``) are all listed at
  once, errors first; warnings never make the check fail.
- The summary says which templates the override directory replaces.  A file there that no
  page uses is a warning with a ``did you mean`` suggestion; an empty directory is a
  warning.  Hidden entries (a ConfigMap volume's ``..data``) and files an override
  includes are not.
- A secret given both directly and as ``..._FILE`` is an error naming both variables.
- A bypass or admin token shorter than 16 characters is a warning; no token is ever shown.
- An unknown ``MWM_`` variable is an error with the variable it was probably meant to be.
- A bad list names its variable and every bad entry, in words, not the JSON parser's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from proxy.pages import OVERRIDABLE_TEMPLATES, builtin_template_dir
from tests.mwmprocess import run_cli

SUMMARY = [
    "  upstream:   http://127.0.0.1:8000/",
    "  public:     0.0.0.0:8080",
    "  management: 0.0.0.0:8081",
    "  state file: (none)",
]
SECRETS_HINT = (
    "use a long random one (python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
)


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = run_cli("check-config", env=env)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_overridable_templates_are_the_built_in_ones() -> None:
    assert sorted(OVERRIDABLE_TEMPLATES) == sorted(
        p.name for p in builtin_template_dir().iterdir() if p.is_file()
    )


def test_a_misnamed_template_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "maintenence.html").write_text("{{ title }}", encoding="utf-8")
    (tmp_path / "maintenance.txt").write_text("{{ title }}\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("notes", encoding="utf-8")
    result = check({"MWM_PAGE__TEMPLATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [
        "configuration OK, 2 warnings",
        *SUMMARY,
        f"  templates:  maintenance.txt from {tmp_path}, the others built-in",
    ]
    assert lines(result.stderr) == [
        "mwm: 2 warnings:",
        "  - MWM_PAGE__TEMPLATE_DIR: README.md is not a template mwm uses, so it is ignored "
        "(mwm uses maintenance.html, maintenance.json, maintenance.txt, error.html, "
        "error.json, error.txt, base.html, dashboard.html, return.js)",
        "  - MWM_PAGE__TEMPLATE_DIR: maintenence.html is not a template mwm uses, so it is "
        "ignored (did you mean maintenance.html?)",
    ]


def test_an_empty_template_directory_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / ".gitkeep").write_text("", encoding="utf-8")
    result = check({"MWM_PAGE__TEMPLATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [
        "configuration OK, 1 warning",
        *SUMMARY,
        f"  templates:  built-in (nothing in {tmp_path} overrides them)",
    ]
    assert lines(result.stderr) == [
        "mwm: 1 warning:",
        f"  - MWM_PAGE__TEMPLATE_DIR: {tmp_path} is empty, so every page is the built-in one",
    ]


def test_the_summary_lists_the_overridden_templates(tmp_path: Path) -> None:
    # As Kubernetes mounts a ConfigMap: hidden ..data entries, files as symlinks into them.
    data = tmp_path / "..2030_01_01_00_00_00.1"
    (data / "partials").mkdir(parents=True)
    (data / "maintenance.html").write_text(
        '{% extends "base.html" %}{% block content %}{{ title }}'
        '{% include "partials/footer.html" %}{% endblock %}',
        encoding="utf-8",
    )
    (data / "partials" / "footer.html").write_text("<footer>{{ contact }}</footer>")
    (data / "error.txt").write_text("{{ status }} {{ title }}\n", encoding="utf-8")
    (tmp_path / "..data").symlink_to(data.name)
    for name in ("maintenance.html", "error.txt", "partials"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    (tmp_path / ".maintenance.html.swp").write_text("editor", encoding="utf-8")
    result = check({"MWM_PAGE__TEMPLATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [
        "configuration OK",
        *SUMMARY,
        f"  templates:  maintenance.html, error.txt from {tmp_path}, the others built-in",
    ]
    assert result.stderr == ""


def test_without_a_template_directory_the_pages_are_built_in() -> None:
    result = check({})
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == ["configuration OK", *SUMMARY, "  templates:  built-in"]
    assert result.stderr == ""


def test_a_secret_and_its_file_both_set_is_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-token-from-a-file-0123456789\n", encoding="utf-8")
    result = check(
        {
            "MWM_BYPASS__TOKEN": "a-token-in-the-environment",
            "MWM_BYPASS__TOKEN_FILE": str(secret),
            "MWM_MANAGEMENT__ADMIN_TOKEN": "an-admin-token-in-the-environment",
            "MWM_MANAGEMENT__ADMIN_TOKEN_FILE": str(secret),
        }
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert lines(result.stderr) == [
        "mwm: 2 configuration problem(s):",
        "  - MWM_BYPASS__TOKEN_FILE: set together with MWM_BYPASS__TOKEN; set only one of the two",
        "  - MWM_MANAGEMENT__ADMIN_TOKEN_FILE: set together with MWM_MANAGEMENT__ADMIN_TOKEN; "
        "set only one of the two",
    ]


def test_short_tokens_are_warnings_that_never_show_the_token(tmp_path: Path) -> None:
    admin_file = tmp_path / "admin-token"
    admin_file.write_text("tiny-admin\n", encoding="utf-8")
    result = check(
        {"MWM_BYPASS__TOKEN": "short-bypass", "MWM_MANAGEMENT__ADMIN_TOKEN_FILE": str(admin_file)}
    )
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)[0] == "configuration OK, 2 warnings"
    assert lines(result.stderr) == [
        "mwm: 2 warnings:",
        "  - MWM_BYPASS__TOKEN: the token is shorter than 16 characters, and whoever guesses it "
        f"gets past the maintenance page; {SECRETS_HINT}",
        f"  - MWM_MANAGEMENT__ADMIN_TOKEN_FILE: the token in {admin_file} is shorter than 16 "
        f"characters, and whoever guesses it can switch maintenance on and off; {SECRETS_HINT}",
    ]
    for secret in ("short-bypass", "tiny-admin"):
        assert secret not in result.stdout + result.stderr


def test_tokens_of_16_characters_pass_quietly() -> None:
    result = check(
        {"MWM_BYPASS__TOKEN": "0123456789abcdef", "MWM_MANAGEMENT__ADMIN_TOKEN": "x" * 40}
    )
    assert result.returncode == 0
    assert lines(result.stdout)[0] == "configuration OK"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("variable", "line"),
    [
        ("MWM_UPSTREAM_URL", "unknown setting (did you mean MWM_UPSTREAM__URL?)"),
        ("MWM_LISTEN__PUBLIC_PROT", "unknown setting (did you mean MWM_LISTEN__PUBLIC_PORT?)"),
        ("MWM_PAGE__TEMPLATES_DIR", "unknown setting (did you mean MWM_PAGE__TEMPLATE_DIR?)"),
        ("MWM_ADMIN_TOKEN", "unknown setting (did you mean MWM_MANAGEMENT__ADMIN_TOKEN?)"),
        ("MWM_TOKEN", "unknown setting (did you mean MWM_BYPASS__TOKEN?)"),
        ("MWM_COLOUR", "unknown setting"),
    ],
)
def test_an_unknown_setting_names_the_likely_one(variable: str, line: str) -> None:
    result = check({variable: "x"})
    assert result.returncode == 2
    assert lines(result.stderr) == ["mwm: 1 configuration problem(s):", f"  - {variable}: {line}"]


def test_bad_lists_name_every_bad_entry() -> None:
    result = check(
        {
            "MWM_BYPASS__ALLOW_CIDRS": "10.0.0.0/8, bogus,192.168.1.0/24,10.1.2.300",
            "MWM_BYPASS__PATH_PREFIXES": "admin,/ops,health",
            "MWM_SOURCE__KUBERNETES__CHECKER_NAMES": "['shop']",
        }
    )
    assert result.returncode == 2
    assert lines(result.stderr) == [
        "mwm: 3 configuration problem(s):",
        "  - MWM_BYPASS__PATH_PREFIXES: 'admin' is not a usable path: the path must start with "
        "'/'; 'health' is not a usable path: the path must start with '/'",
        "  - MWM_BYPASS__ALLOW_CIDRS: not an address or CIDR block: 'bogus', '10.1.2.300' "
        "(write them like 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32)",
        "  - MWM_SOURCE__KUBERNETES__CHECKER_NAMES: starts with '[' but is not a JSON list (it "
        'breaks at character 2); write ["a","b"] with double quotes, or a,b without brackets',
    ]


def test_a_json_list_with_entries_of_the_wrong_type_names_them() -> None:
    result = check({"MWM_BYPASS__PATH_PREFIXES": '["/admin", 7, {"path": "/ops"}]'})
    assert result.returncode == 2
    assert lines(result.stderr) == [
        "mwm: 1 configuration problem(s):",
        "  - MWM_BYPASS__PATH_PREFIXES: entry 2 (7): Input should be a valid string; "
        "entry 3 ({'path': '/ops'}): Input should be a valid string",
    ]


def test_errors_and_warnings_are_listed_together(tmp_path: Path) -> None:
    (tmp_path / "maintenance.htm").write_text("{{ title }}", encoding="utf-8")
    result = check(
        {
            "MWM_PAGE__TEMPLATE_DIR": str(tmp_path),
            "MWM_UPSTREAM__URLL": "http://app:8000",
            "MWM_BYPASS__ALLOW_CIDRS": "intranet",
        }
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert lines(result.stderr) == [
        "mwm: 2 configuration problem(s):",
        "  - MWM_UPSTREAM__URLL: unknown setting (did you mean MWM_UPSTREAM__URL?)",
        "  - MWM_BYPASS__ALLOW_CIDRS: not an address or CIDR block: 'intranet' "
        "(write them like 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32)",
        "mwm: 1 warning:",
        "  - MWM_PAGE__TEMPLATE_DIR: maintenance.htm is not a template mwm uses, so it is "
        "ignored (did you mean maintenance.html?)",
    ]


def test_a_broken_dashboard_override_is_an_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "dashboard.html").write_text("<h1>ops</h1>\n{% if %}\n", encoding="utf-8")
    result = check({"MWM_PAGE__TEMPLATE_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert f"template dashboard.html (override dir {tmp_path}): line 2: " in result.stderr
