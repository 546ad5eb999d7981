"""The whole proxy, started as ``mwm run`` starts it, in front of a real upstream."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from yarl import URL

from tests.conftest import ADMIN_TOKEN, BYPASS_TOKEN, ProxyFactory
from tests.promises.rawhttp import exchange


async def test_forwards_when_maintenance_is_off(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    async with proxy.session.get(f"{proxy.public_url}/shop?x=1") as response:
        assert response.status == 200
        body = await response.json()
    assert body["path"] == "/shop?x=1"


async def test_admin_switch_blocks_users_and_ends_live(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrading the database")
    async with proxy.session.get(
        f"{proxy.public_url}/shop", headers={"Accept": "text/html"}
    ) as response:
        assert response.status == 503
        assert "Upgrading the database" in await response.text()
        assert response.headers["Retry-After"] == "300"
        assert response.headers["Cache-Control"] == "no-store"

    async with proxy.session.delete(
        f"{proxy.management_url}/api/maintenance", headers=proxy.admin_headers
    ) as response:
        assert response.status == 200
    async with proxy.session.get(f"{proxy.public_url}/shop") as response:
        assert response.status == 200


async def test_until_switches_maintenance_off_by_itself(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    until = datetime.now(UTC) + timedelta(milliseconds=300)
    await proxy.switch(enabled=True, reason="short", until=until.isoformat())
    async with proxy.session.get(f"{proxy.public_url}/") as response:
        assert response.status == 503
        retry_at = email.utils.parsedate_to_datetime(response.headers["Retry-After"])
        assert abs((retry_at - until).total_seconds()) < 1
    await proxy.wait_for(lambda state: not state.maintenance.active)
    async with proxy.session.get(f"{proxy.public_url}/") as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        pytest.param({}, {}, 401, id="no-token"),
        pytest.param({"Authorization": "Bearer wrong"}, {}, 401, id="wrong-token"),
        pytest.param({"Authorization": f"Basic {ADMIN_TOKEN}"}, {}, 401, id="wrong-scheme"),
        pytest.param({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, {}, 401, id="token-suffix"),
        pytest.param({}, {"token": ADMIN_TOKEN}, 400, id="token-in-query"),
        pytest.param(
            {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"access_token": "x"}, 400, id="query-too"
        ),
    ],
)
async def test_admin_api_refuses_without_a_valid_token(
    start_proxy: ProxyFactory, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    proxy = await start_proxy()
    async with proxy.session.put(
        f"{proxy.management_url}/api/maintenance",
        json={"enabled": True},
        headers=headers,
        params=params,
    ) as response:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        assert ADMIN_TOKEN not in await response.text()
    assert not proxy.runtime.store.current.maintenance.active


async def test_admin_api_is_disabled_without_a_token_setting(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_MANAGEMENT__ADMIN_TOKEN": ""})
    async with proxy.session.put(
        f"{proxy.management_url}/api/maintenance", json={"enabled": True}
    ) as response:
        assert response.status == 403
        assert "MWM_MANAGEMENT__ADMIN_TOKEN" in (await response.json())["detail"]


async def test_admin_api_reports_invalid_body_fields(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    async with proxy.session.put(
        f"{proxy.management_url}/api/maintenance",
        json={"enabled": "maybe", "until": "tomorrow", "colour": "red"},
        headers=proxy.admin_headers,
    ) as response:
        assert response.status == 422
        fields = {error["field"] for error in (await response.json())["errors"]}
    assert fields == {"enabled", "until", "colour"}


async def test_probes_are_never_gated_by_maintenance(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    for path in ("/healthz", "/health", "/readyz", "/ready"):
        async with proxy.session.get(f"{proxy.management_url}{path}") as response:
            assert response.status == 200, path


async def test_readiness_drain_mode_fails_readiness_during_maintenance(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"MWM_MANAGEMENT__READINESS_DRAIN": "true"})
    async with proxy.session.get(f"{proxy.management_url}/readyz") as response:
        assert response.status == 200
    await proxy.switch(enabled=True)
    async with proxy.session.get(f"{proxy.management_url}/readyz") as response:
        assert response.status == 503
    async with proxy.session.get(f"{proxy.management_url}/healthz") as response:
        assert response.status == 200


async def test_readiness_drain_mode_keeps_readiness_during_a_read_only_maintenance(
    start_proxy: ProxyFactory,
) -> None:
    # A read-only maintenance still serves every read: the pod must stay in the Service.
    proxy = await start_proxy({"MWM_MANAGEMENT__READINESS_DRAIN": "true"})
    await proxy.switch(enabled=True, mode="readOnly")
    await proxy.wait_for(lambda state: state.maintenance.active)
    async with proxy.session.get(f"{proxy.management_url}/readyz") as response:
        assert response.status == 200
    await proxy.switch(enabled=True, mode="full")
    await proxy.wait_for(lambda state: state.maintenance.whole_site)
    async with proxy.session.get(f"{proxy.management_url}/readyz") as response:
        assert response.status == 503


def _write_state_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mwm.yaml"
    path.write_text(body)
    return path


async def test_services_document_shapes_and_etag(start_proxy: ProxyFactory, tmp_path: Path) -> None:
    state_file = _write_state_file(
        tmp_path,
        """
spec:
  services:
    - {name: zeta, namespace: shop, critical: false}
    - {name: alpha, namespace: shop, critical: true}
""",
    )
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(state_file)})
    await proxy.wait_for(lambda state: state.snapshot.synced)
    for base in (proxy.public_url, proxy.management_url):
        async with proxy.session.get(f"{base}/services") as response:
            assert response.status == 200
            etag = response.headers["ETag"]
            assert await response.json() == [
                {"name": "alpha", "namespace": "shop", "ready": True, "critical": True},
                {"name": "zeta", "namespace": "shop", "ready": True, "critical": False},
            ]
        async with proxy.session.get(
            f"{base}/services", headers={"If-None-Match": etag}
        ) as response:
            assert response.status == 304

    async with proxy.session.get(f"{proxy.management_url}/status") as response:
        status = await response.json()
        status_etag = response.headers["ETag"]
    assert status["maintenance"] == {
        "active": False,
        "reason": None,
        "since": None,
        "until": None,
        "causes": [],
        "scope": None,
        "affectedRoutes": [],
    }
    assert [s["name"] for s in status["services"]] == ["alpha", "zeta"]
    assert set(status["services"][0]) >= {"readyEndpoints", "totalEndpoints", "reason"}

    await proxy.switch(enabled=True, reason="Planned")
    async with proxy.session.get(
        f"{proxy.management_url}/status", headers={"If-None-Match": status_etag}
    ) as response:
        assert response.status == 200
        status = await response.json()
    assert status["maintenance"]["active"] is True
    assert status["maintenance"]["causes"][0]["kind"] == "Manual"


async def test_empty_services_is_an_empty_list(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    async with proxy.session.get(f"{proxy.public_url}/services") as response:
        assert await response.json() == []


async def test_public_services_path_can_be_switched_off(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_MANAGEMENT__PUBLIC_SERVICES_PATH": ""})
    async with proxy.session.get(f"{proxy.public_url}/services") as response:
        # Forwarded to the app like any other path.
        assert (await response.json())["path"] == "/services"


async def test_file_switch_turns_maintenance_on(start_proxy: ProxyFactory, tmp_path: Path) -> None:
    state_file = _write_state_file(
        tmp_path, "spec:\n  maintenance: {enabled: true, reason: From the file}\n"
    )
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(state_file)})
    await proxy.wait_for(lambda state: state.maintenance.active)
    async with proxy.session.get(
        f"{proxy.public_url}/", headers={"Accept": "application/json"}
    ) as response:
        assert response.status == 503
        problem = json.loads(await response.read())
    assert problem["status"] == 503
    assert "From the file" in problem["detail"]


async def test_bypass_cookie_is_issued_by_the_secret_url_and_lets_its_holder_through(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    async with proxy.session.get(
        f"{proxy.public_url}/_mwm/bypass/{BYPASS_TOKEN}", allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/"
        set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP here
    cookie = set_cookie.split(";", 1)[0]

    async with proxy.session.get(f"{proxy.public_url}/shop", headers={"Cookie": cookie}) as r:
        assert r.status == 200
        assert "no-store" in r.headers["Cache-Control"]
        assert "private" in r.headers["Cache-Control"]
    async with proxy.session.get(f"{proxy.public_url}/shop") as response:
        assert response.status == 503


async def test_wrong_secret_url_is_indistinguishable_from_any_path(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    async with proxy.session.get(
        f"{proxy.public_url}/_mwm/bypass/guess", allow_redirects=False
    ) as response:
        assert response.status == 200
        assert "Set-Cookie" not in response.headers
        assert (await response.json())["path"] == "/_mwm/bypass/guess"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/admin", 200, id="admin"),
        pytest.param("/admin/users", 200, id="admin-subpath"),
        pytest.param("/%61dmin", 200, id="encoded-admin"),
        pytest.param("//admin", 200, id="double-slash"),
        pytest.param("/admin/../checkout", 503, id="dot-dot-out"),
        pytest.param("/ADMIN", 503, id="case"),
        pytest.param("/administrator", 503, id="longer-segment"),
    ],
)
async def test_admin_path_bypass_uses_the_normalized_path(
    start_proxy: ProxyFactory, path: str, expected: int
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    async with proxy.session.get(
        f"{proxy.public_url}{path}", headers={"Accept": "application/json"}
    ) as response:
        assert response.status == expected
        if expected == 200:
            forwarded = (await response.json())["path"]
            assert forwarded.startswith("/admin")


async def test_forwarded_path_is_the_checked_path(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    url = URL(f"{proxy.public_url}//a/./b/../%63?q=%2F", encoded=True)
    async with proxy.session.get(url) as response:
        assert (await response.json())["path"] == "/a/c?q=%2F"


async def test_encoded_slash_is_forwarded_intact_only_when_kept(
    start_proxy: ProxyFactory,
) -> None:
    kept = await start_proxy({"MWM_BYPASS__ENCODED_SLASHES": "keep"})
    url = URL(f"{kept.public_url}/api/projects/group%2fname", encoded=True)
    async with kept.session.get(url) as response:
        assert response.status == 200
        assert (await response.json())["path"] == "/api/projects/group%2Fname"

    strict = await start_proxy()
    url = URL(f"{strict.public_url}/api/projects/group%2Fname", encoded=True)
    async with strict.session.get(url) as response:
        assert response.status == 400


async def test_header_token_bypass(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    headers = {"X-Maintenance-Bypass": BYPASS_TOKEN}
    async with proxy.session.get(f"{proxy.public_url}/", headers=headers) as response:
        assert response.status == 200
    async with proxy.session.get(
        f"{proxy.public_url}/", headers={"X-Maintenance-Bypass": BYPASS_TOKEN[:-1]}
    ) as response:
        assert response.status == 503


async def test_cidr_bypass(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_BYPASS__ALLOW_CIDRS": "127.0.0.0/8"})
    await proxy.switch(enabled=True)
    async with proxy.session.get(f"{proxy.public_url}/") as response:
        assert response.status == 200


async def test_metrics_count_outcomes(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    async with proxy.session.get(f"{proxy.public_url}/"):
        pass
    await proxy.switch(enabled=True)
    async with proxy.session.get(f"{proxy.public_url}/"):
        pass
    async with proxy.session.get(
        f"{proxy.public_url}/", headers={"X-Maintenance-Bypass": BYPASS_TOKEN}
    ):
        pass
    async with proxy.session.get(f"{proxy.management_url}/metrics") as response:
        text = await response.text()
    assert 'mwm_requests_total{outcome="forward"} 1' in text
    assert 'mwm_requests_total{outcome="block"} 1' in text
    assert 'mwm_bypass_total{rule="token"} 1' in text
    assert "mwm_maintenance_active 1" in text
    assert BYPASS_TOKEN not in text


async def test_unreachable_upstream_gets_the_502_page(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_UPSTREAM__URL": "http://127.0.0.1:9"})
    async with proxy.session.get(
        f"{proxy.public_url}/", headers={"Accept": "application/json"}
    ) as response:
        assert response.status == 502
        problem = json.loads(await response.read())
    assert problem["status"] == 502


async def test_head_gets_the_maintenance_headers_without_a_body(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    async with proxy.session.head(f"{proxy.public_url}/shop") as response:
        assert response.status == 503
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Retry-After"] == "300"
        assert int(response.headers["Content-Length"]) > 0
        assert await response.read() == b""


async def test_pipelined_blocked_requests_each_get_one_complete_page(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    async with proxy.session.get(f"{proxy.public_url}/", headers={"Accept": "text/plain"}) as page:
        expected_body = await page.read()
    request = b"GET /shop HTTP/1.1\r\nHost: shop\r\nAccept: text/plain\r\n\r\n"
    last = b"GET /shop HTTP/1.1\r\nHost: shop\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    responses = await exchange(proxy.public_port, request * 3 + last)
    assert len(responses) == 4
    for response in responses:
        assert response.status_line == "HTTP/1.1 503 Service Unavailable"
        assert response.body == expected_body
        for name in ("date", "server", "content-length", "content-type", "retry-after"):
            assert len(response.values(name)) == 1, (name, response.headers)
        assert response.values("server") == ["mwm"]
        assert email.utils.parsedate_to_datetime(response.values("date")[0]).tzinfo is not None
    assert responses[-1].values("connection") == ["close"]


async def test_pipelined_forwarded_requests_each_get_their_own_complete_answer(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    requests = b"".join(f"GET /item/{n} HTTP/1.1\r\nHost: shop\r\n\r\n".encode() for n in range(3))
    requests += b"GET /item/3 HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
    responses = await exchange(proxy.public_port, requests)
    assert [response.json()["path"] for response in responses] == [f"/item/{n}" for n in range(4)]
    for response in responses:
        assert response.status_line == "HTTP/1.1 200 OK"
        assert len(response.values("date")) == 1
        assert response.values("cache-control") == ["public, max-age=60"]


async def test_http_1_0_gets_the_page_and_a_closed_connection(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    [response] = await exchange(proxy.public_port, b"GET / HTTP/1.0\r\nAccept: text/plain\r\n\r\n")
    assert response.status_line == "HTTP/1.0 503 Service Unavailable"
    assert len(response.body) == int(response.values("content-length")[0]) > 0


async def test_window_in_the_file_opens_and_ends_by_itself(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    end = now + timedelta(seconds=2)
    state_file = _write_state_file(
        tmp_path,
        "spec:\n  windows:\n"
        f"    - {{start: '{(now - timedelta(hours=1)).isoformat()}', "
        f"end: '{end.isoformat()}', reason: Database upgrade}}\n",
    )
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(state_file)})
    await proxy.wait_for(lambda state: state.snapshot.synced)
    async with proxy.session.get(f"{proxy.public_url}/") as response:
        assert response.status == 503
        assert "Database upgrade" in await response.text()
        retry_at = email.utils.parsedate_to_datetime(response.headers["Retry-After"])
        assert abs((retry_at - end).total_seconds()) < 1
    await proxy.wait_for(lambda state: not state.maintenance.active)
    async with proxy.session.get(f"{proxy.public_url}/") as response:
        assert response.status == 200


async def test_broken_override_template_still_serves_the_maintenance_page(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    (tmp_path / "maintenance.html").write_text("{{ no_such_variable.attribute }}")
    proxy = await start_proxy({"MWM_PAGE__TEMPLATE_DIR": str(tmp_path)})
    await proxy.switch(enabled=True, reason="Still a page")
    async with proxy.session.get(
        f"{proxy.public_url}/", headers={"Accept": "text/html"}
    ) as response:
        assert response.status == 503
        assert "Still a page" in await response.text()


async def test_own_responses_do_not_announce_python_or_aiohttp_versions(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    urls = [
        f"{proxy.public_url}/",  # the 503 page
        f"{proxy.public_url}/services",
        f"{proxy.public_url}/%00",  # 400
        f"{proxy.management_url}/healthz",
        f"{proxy.management_url}/status",
    ]
    for url in urls:
        async with proxy.session.get(URL(url, encoded=True)) as response:
            assert response.headers["Server"] == "mwm", url
