"""The admin API changes a switch only when the body says so explicitly (issue 11).

``PUT /api/maintenance`` takes a strict body: ``enabled`` is required and must be a JSON
boolean, ``reason`` a string, ``until`` an RFC 3339 time with a zone, nothing else.  Any
other body gets a 422 problem+json answer listing every bad field (dotted path, JSON
pointer, what was expected) and changes nothing, whatever the switch was before.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import ProxyFactory, RunningProxy

FUTURE = (datetime.now(UTC) + timedelta(days=1)).isoformat()
PAST = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


async def _put(proxy: RunningProxy, body: bytes) -> tuple[int, str, dict[str, Any]]:
    async with proxy.session.put(
        f"{proxy.management_url}/api/maintenance",
        data=body,
        headers={**proxy.admin_headers, "Content-Type": "application/json"},
    ) as response:
        return response.status, response.content_type, await response.json(content_type=None)


async def _switch(proxy: RunningProxy) -> dict[str, Any]:
    async with proxy.session.get(
        f"{proxy.management_url}/api/maintenance", headers=proxy.admin_headers
    ) as response:
        assert response.status == 200
        switch: dict[str, Any] = (await response.json())["switch"]
        return switch


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


REFUSED = [
    pytest.param(b"", ["#/enabled"], id="empty-body"),
    pytest.param(b"{}", ["#/enabled"], id="empty-object"),
    pytest.param(_json({"reason": "x"}), ["#/enabled"], id="reason-only"),
    pytest.param(_json({"until": FUTURE}), ["#/enabled"], id="until-only"),
    pytest.param(_json({"enabled": "yes"}), ["#/enabled"], id="enabled-yes"),
    pytest.param(_json({"enabled": "true"}), ["#/enabled"], id="enabled-true-as-a-string"),
    pytest.param(_json({"enabled": 1}), ["#/enabled"], id="enabled-one"),
    pytest.param(_json({"enabled": 0}), ["#/enabled"], id="enabled-zero"),
    pytest.param(_json({"enabled": None}), ["#/enabled"], id="enabled-null"),
    pytest.param(_json({"enabled": True, "colour": "red"}), ["#/colour"], id="unknown-field"),
    pytest.param(_json({"enabled": True, "Enabled": True}), ["#/Enabled"], id="other-case"),
    pytest.param(_json({"enabled": True, "reason": 5}), ["#/reason"], id="reason-number"),
    pytest.param(_json({"enabled": True, "reason": "r" * 501}), ["#/reason"], id="reason-long"),
    pytest.param(_json({"enabled": True, "until": "tomorrow"}), ["#/until"], id="until-text"),
    pytest.param(_json({"enabled": True, "until": 1_900_000_000}), ["#/until"], id="until-number"),
    pytest.param(
        _json({"enabled": True, "until": "2030-01-01T00:00:00"}), ["#/until"], id="until-no-zone"
    ),
    pytest.param(_json({"enabled": True, "until": PAST}), ["#/until"], id="until-past"),
    pytest.param(_json({"enabled": True, "until": "2030-01-01"}), ["#/until"], id="until-date"),
    pytest.param(
        _json({"enabled": True, "until": "2030-W01-2T10:00:00Z"}), ["#/until"], id="until-week"
    ),
    pytest.param(
        _json({"enabled": True, "until": "20300101T100000Z"}), ["#/until"], id="until-basic"
    ),
    pytest.param(
        _json({"enabled": True, "until": "2030-01-01 10:00:00Z"}), ["#/until"], id="until-space"
    ),
    pytest.param(
        _json({"enabled": True, "until": "2030-01-01T10:00Z"}), ["#/until"], id="until-no-seconds"
    ),
    pytest.param(_json({"enabled": True, "mode": "readonly"}), ["#/mode"], id="mode-lower-case"),
    pytest.param(_json({"enabled": True, "mode": "read-only"}), ["#/mode"], id="mode-dashed"),
    pytest.param(_json({"enabled": True, "mode": None}), ["#/mode"], id="mode-null"),
    pytest.param(_json({"enabled": True, "mode": True}), ["#/mode"], id="mode-boolean"),
    pytest.param(_json([{"enabled": True}]), ["#"], id="array"),
    pytest.param(_json(True), ["#"], id="bare-true"),
    pytest.param(b'{"enabled": true,}', ["#"], id="not-json"),
    pytest.param(b"enabled=true", ["#"], id="form-encoded"),
]


@pytest.mark.parametrize("before", ["off", "on"])
@pytest.mark.parametrize(("body", "pointers"), REFUSED)
async def test_a_body_that_does_not_say_so_explicitly_changes_nothing(
    start_proxy: ProxyFactory, before: str, body: bytes, pointers: list[str]
) -> None:
    proxy = await start_proxy()
    if before == "on":
        await proxy.switch(enabled=True, reason="Already on")
    switch = await _switch(proxy)
    active = proxy.runtime.store.current.maintenance.active
    generation = proxy.runtime.store.current.generation

    status, content_type, problem = await _put(proxy, body)

    assert status == 422
    assert content_type == "application/problem+json"
    assert problem["status"] == 422
    assert "nothing was changed" in problem["detail"]
    assert [error["pointer"] for error in problem["errors"]] == pointers
    for error in problem["errors"]:
        assert error["expected"]
        assert error["message"]
    assert proxy.runtime.store.current.generation == generation
    assert proxy.runtime.store.current.maintenance.active is active is (before == "on")
    assert await _switch(proxy) == switch


async def test_every_bad_field_is_listed_with_what_it_expects(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    body = {"enabled": "yes", "reason": ["x"], "until": "tomorrow", "colour": "red"}
    status, _, problem = await _put(proxy, _json(body))
    assert status == 422
    errors = {error["pointer"]: error for error in problem["errors"]}
    assert set(errors) == {"#/enabled", "#/reason", "#/until", "#/colour"}
    assert {error["field"] for error in problem["errors"]} == {
        "enabled",
        "reason",
        "until",
        "colour",
    }
    assert "JSON boolean" in errors["#/enabled"]["expected"]
    assert "required" in errors["#/enabled"]["expected"]
    assert "string" in errors["#/reason"]["expected"]
    assert "RFC 3339" in errors["#/until"]["expected"]
    assert errors["#/colour"]["expected"] == "only the fields enabled, reason, until, mode"
    for field in ("enabled", "reason", "until", "colour"):
        assert field in problem["detail"]
    assert not proxy.runtime.store.current.maintenance.active


async def test_a_missing_field_names_what_to_send(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    status, _, problem = await _put(proxy, b"")
    assert status == 422
    assert problem["detail"] == (
        "The request body is not valid; nothing was changed. "
        "enabled: expected true or false (a JSON boolean); required."
    )
    [error] = problem["errors"]
    assert error == {
        "field": "enabled",
        "pointer": "#/enabled",
        "expected": "true or false (a JSON boolean); required",
        "message": "Field required",
    }


@pytest.mark.parametrize(
    ("body", "active"),
    [
        pytest.param({"enabled": True}, True, id="on"),
        pytest.param({"enabled": True, "reason": "Upgrading", "until": FUTURE}, True, id="all"),
        pytest.param({"enabled": True, "reason": None, "until": None}, True, id="nulls"),
        pytest.param({"enabled": False}, False, id="off"),
    ],
)
async def test_an_explicit_body_switches(
    start_proxy: ProxyFactory, body: dict[str, Any], active: bool
) -> None:
    proxy = await start_proxy()
    status, _, answer = await _put(proxy, _json(body))
    assert status == 200
    assert answer["switch"]["enabled"] is body["enabled"]
    assert answer["maintenance"]["active"] is active
    assert proxy.runtime.store.current.maintenance.active is active


async def test_until_is_strict_rfc3339_and_its_error_says_what_to_send(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    status, _, problem = await _put(proxy, _json({"enabled": True, "until": "2030-W01-2T10:00Z"}))
    assert status == 422
    [error] = problem["errors"]
    assert error["field"] == "until"
    assert "2030-W01-2T10:00Z" in error["message"]
    assert "RFC 3339 time such as 2026-12-01T10:00:00Z" in error["expected"]
    assert "Z or ±HH:MM" in error["expected"]


async def test_switch_times_are_written_in_utc_with_z_and_whole_seconds(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=250000)
    in_plus_two = until.astimezone(timezone(timedelta(hours=2))).isoformat()
    status, _, answer = await _put(proxy, _json({"enabled": True, "until": in_plus_two}))
    assert status == 200
    switch = answer["switch"]
    assert switch["until"] == until.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert switch["since"].endswith("Z")
    assert "." not in switch["since"]
    assert proxy.runtime.store.current.maintenance.until == until  # kept exactly inside


async def test_delete_still_switches_off_without_a_body(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrading")
    async with proxy.session.delete(
        f"{proxy.management_url}/api/maintenance", headers=proxy.admin_headers
    ) as response:
        assert response.status == 200
        assert (await response.json())["switch"]["enabled"] is False
    assert not proxy.runtime.store.current.maintenance.active


async def test_mode_says_what_it_takes(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    status, _, problem = await _put(proxy, _json({"enabled": True, "mode": "readonly"}))
    assert status == 422
    [error] = problem["errors"]
    assert error["field"] == "mode"
    assert error["expected"] == '"full" (the default) or "readOnly" (only writes get the page)'
    assert "'full' or 'readOnly'" in error["message"]
    assert not proxy.runtime.store.current.maintenance.active


@pytest.mark.parametrize(
    ("body", "mode"),
    [
        pytest.param({"enabled": True, "mode": "readOnly"}, "readOnly", id="read-only"),
        pytest.param({"enabled": True, "mode": "full"}, "full", id="full"),
        pytest.param({"enabled": True}, "full", id="default"),
    ],
)
async def test_mode_is_set_shown_and_published(
    start_proxy: ProxyFactory, body: dict[str, Any], mode: str
) -> None:
    proxy = await start_proxy()
    status, _, answer = await _put(proxy, _json(body))
    assert status == 200
    assert answer["switch"]["mode"] == mode
    assert (await _switch(proxy))["mode"] == mode
    (switch,) = [
        s for s in proxy.runtime.store.current.snapshot.switches if s.source == "admin-api"
    ]
    assert switch.enabled
    assert str(switch.mode) == mode


async def test_switching_off_after_read_only_shows_full(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await _put(proxy, _json({"enabled": True, "mode": "readOnly"}))
    status, _, answer = await _put(proxy, _json({"enabled": False}))
    assert status == 200
    assert answer["switch"] == {**answer["switch"], "enabled": False, "mode": "full"}
