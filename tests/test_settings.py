"""Settings from the environment: every problem named by its variable, nothing else refused."""

from __future__ import annotations

import pytest

from proxy.settings import SettingsError, load_settings


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
