"""Every MWM_ variable the chart sets is one the process accepts, with the value meant.

The chart's env vars are fed to ``proxy.settings.load_settings`` (as ``mwm run`` does with
its environment, unknown variables being errors), with every setting given a value other
than the process's default, so a mistyped name, a lost value or a mangled number (Helm
holds numbers as float64) fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

from pydantic import AnyUrl

from proxy.settings import Settings, load_settings
from tests.chart.chartrender import (
    BASE_VALUES,
    JsonObject,
    env_of,
    mwm_container,
    only,
    render,
    values,
)
from tests.chart.test_chart_values_schema import committed_schema, schema_paths

NON_DEFAULT: JsonObject = {
    "listen": {
        "public_host": "127.0.0.1",
        "public_port": 9080,
        "management_host": "127.0.0.2",
        "management_port": 9081,
        "workers": 2,
        "fast_lane": False,
    },
    "upstream": {
        "url": "http://shop.shop.svc.cluster.local:8000/base",
        "connect_timeout_s": 2.5,
        "read_timeout_s": 120,
        "pool_size": 50,
        "pool_timeout_s": 2.5,
        "keepalive_timeout_s": 3.5,
        "websocket_max_message_bytes": 8388608,  # Go would print a float64 as 8.388608e+06
        "body_min_rate_bytes_s": 1000,
        "client_send_timeout_s": 45,
        "max_per_client": 20,
    },
    "forwarded": {"trusted_hops": 1, "keep_routing_headers": True},
    "limits": {
        "max_body_bytes": 52428800,
        "max_request_line_bytes": 4096,
        "max_header_field_bytes": 32768,
        "max_header_count": 64,
        "max_header_bytes": 49152,
        "body_timeout_s": 30,
        "header_timeout_s": 12.5,
        "keepalive_timeout_s": 650,
    },
    "bypass": {
        "path_prefixes": ["/admin", "/ops"],
        "header_name": "X-Shop-Bypass",
        "allow_cidrs": ["10.0.0.0/8", "2001:db8::/32"],
        "cookie_name": "shop_bypass",
        "cookie_lifetime_s": 3600,
        "cookie_path": "/_shop/bypass",
        "redirect_to": "/shop/",
        "encoded_slashes": "keep",
    },
    "page": {
        "template_dir": "/srv/templates",
        "title": "Shop: down for maintenance",
        "message": 'We\'re upgrading the database — back at 10:00, "promise".',
        "contact": "ops@example.com",
        "retry_after_s": 120,
        "refresh_s": 30,
        "show_services": False,
        "return_spread_s": 2.5,
        "default_language": "de",
    },
    "management": {
        "readiness_drain": True,
        "public_services_path": "",
        "history_size": 200,
        "dashboard_poll_s": 2.5,
    },
    "status": {
        "prefix": "/.well-known/shop/",
        "cors_origins": ["https://shop.example", "https://www.shop.example"],
        "announce_header": "X-Maintenance-Announced",
        "heartbeat_s": 20,
        "max_subscribers": 500,
        "stream_retry_s": 2.5,
    },
    "hold": {"seconds": 7.5, "max_requests": 200, "max_body_bytes": 4096},
    "shutdown": {"prestop_delay_s": 3, "drain_timeout_s": 20.5},
    "log": {"level": "DEBUG", "format": "json", "access_log": True},
    "source": {
        "kind": "kubernetes",
        "local": {
            "file": "/etc/mwm/state.yaml",
            "reload_interval_s": 2,
            "probe_interval_s": 10,
            "probe_timeout_s": 1.5,
            "failure_threshold": 5,
            "success_threshold": 2,
        },
        "kubernetes": {
            "namespace": "shop-checkers",
            "checker_names": ["shop", "payments"],
            "checker_label_selector": "app=shop",
            "configmap_name": "shop-switch",
            "configmap_key": "SHOP_MAINTENANCE",
            "api_url": "http://127.0.0.1:8001",
            "kubeconfig": "/etc/kube/config",
            "context": "shop",
            "request_timeout_s": 10,
            "watch_timeout_s": 120,
            "inactivity_timeout_s": 150,
            "backoff_initial_s": 0.25,
            "backoff_max_s": 10,
            "stale_after_s": 30,
            "fail_safe": "maintenance",
        },
        "leader_election": {
            "enabled": False,
            "lease_name": "shop-leader",
            "lease_duration_s": 20,
            "renew_deadline_s": 12,
            "retry_period_s": 3,
            "identity": "pod-a",
        },
        "status": {
            "enabled": False,
            "coalesce_s": 0.5,
            "retry_initial_s": 1,
            "retry_max_s": 60,
        },
    },
}
SECRET_FILES = {
    "MWM_BYPASS__TOKEN_FILE": "bypass-token",
    "MWM_BYPASS__COOKIE_SECRET_FILE": "cookie-secret",
    "MWM_MANAGEMENT__ADMIN_TOKEN_FILE": "admin-token",
}


def leaves(tree: JsonObject, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def env_name(path: tuple[str, ...]) -> str:
    return "MWM_" + "__".join(path).upper()


def chart_env(chart_values: JsonObject) -> dict[str, str]:
    objects = render(chart_values)
    return env_of(mwm_container(only(objects, "Deployment")["spec"]["template"]["spec"]))


def with_secret_files(env: dict[str, str], directory: Path) -> dict[str, str]:
    """The env with each secret file path moved to a real file under ``directory``."""
    moved = dict(env)
    for name, key in SECRET_FILES.items():
        assert env[name] == f"/etc/mwm/secrets/{key}"
        path = directory / key
        path.write_text(f"{key}-value\n", encoding="utf-8")
        moved[name] = str(path)
    return moved


def setting(settings: Settings, path: tuple[str, ...]) -> Any:
    node: Any = settings
    for part in path:
        node = getattr(node, part)
    return node


def plain(value: Any) -> Any:
    """A loaded setting as the value it was given in the chart."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, AnyUrl | Path | IPv4Network | IPv6Network):
        return str(value)
    return value


def test_non_default_values_cover_every_setting_in_the_chart() -> None:
    assert {p for p, _ in leaves(NON_DEFAULT)} == set(
        schema_paths(committed_schema()["properties"]["config"])
    )
    defaults = Settings.model_construct()
    for path, value in leaves(NON_DEFAULT):
        node: Any = defaults
        for part in path[:-1]:
            node = getattr(node, part)
        default_field = type(node).model_fields[path[-1]]
        default = default_field.get_default(call_default_factory=True, validated_data={})
        assert plain(default) != value, f"{'.'.join(path)}: {value!r} is the default"


def test_every_variable_the_chart_sets_is_accepted_with_its_value(tmp_path: Path) -> None:
    env = chart_env(values(config=NON_DEFAULT, terminationGracePeriodSeconds=30))
    expected_names = {env_name(path) for path, _ in leaves(NON_DEFAULT)} | set(SECRET_FILES)
    assert set(env) == expected_names
    settings = load_settings(with_secret_files(env, tmp_path))
    for path, value in leaves(NON_DEFAULT):
        loaded = plain(setting(settings, path))
        if path == ("management", "public_services_path"):
            assert loaded is None, "an empty path switches /services off"
        else:
            assert loaded == value, f"{env_name(path)}={env[env_name(path)]!r} -> {loaded!r}"
    assert settings.bypass.token is not None
    assert settings.bypass.token.get_secret_value() == "bypass-token-value"
    assert settings.bypass.cookie_secret is not None
    assert settings.bypass.cookie_secret.get_secret_value() == "cookie-secret-value"
    assert settings.management.admin_token is not None
    assert settings.management.admin_token.get_secret_value() == "admin-token-value"


def test_the_charts_own_defaults_are_accepted(tmp_path: Path) -> None:
    env = chart_env(BASE_VALUES)
    settings = load_settings(with_secret_files(env, tmp_path))
    assert settings.source.kind.value == "kubernetes"
    assert settings.source.kubernetes.namespace == "shop"
    assert settings.source.leader_election.lease_name == "mwm-maintenance-window-manager-leader"
    assert settings.source.kubernetes.configmap_name == "mwm-maintenance-window-manager-maintenance"
    assert settings.log.format.value == "json"
    assert settings.shutdown.prestop_delay_s == 5
    assert settings.page.template_dir is None


def test_the_template_directory_is_accepted(tmp_path: Path) -> None:
    env = chart_env(values(pageTemplates={"maintenance.txt": "{{ title }}"}))
    settings = load_settings(with_secret_files(env, tmp_path))
    assert settings.page.template_dir == Path("/etc/mwm/templates")


def test_service_links_are_off_and_harmless_anyway(tmp_path: Path) -> None:
    # Kubernetes adds <SERVICE>_SERVICE_HOST etc. for every Service in the namespace; the
    # chart's own Service, for release "mwm", gives MWM_..._SERVICE_HOST.  The chart turns
    # them off, and the settings loader skips them should another Service add them.
    objects = render(BASE_VALUES)
    service = only(objects, "Service")["metadata"]["name"]
    prefix = service.upper().replace("-", "_")
    links = {
        f"{prefix}_SERVICE_HOST": "10.0.0.1",
        f"{prefix}_PORT": "tcp://10.0.0.1:80",
        f"{prefix}_PORT_80_TCP_ADDR": "10.0.0.1",
    }
    assert prefix.startswith("MWM_")
    env = with_secret_files(chart_env(BASE_VALUES), tmp_path)
    assert load_settings({**env, **links}).source.kind.value == "kubernetes"
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
