"""``mwm on --read-only``: the admin API's switch in read-only mode (issue 14)."""

from __future__ import annotations

import asyncio

import pytest

from controller.snapshot import Mode
from proxy.cli import main as cli_main
from tests.conftest import ADMIN_TOKEN, ProxyFactory


@pytest.mark.parametrize(("flags", "mode"), [(["--read-only"], Mode.READ_ONLY), ([], Mode.FULL)])
async def test_mwm_on_sets_the_mode_of_the_admin_switch(
    start_proxy: ProxyFactory,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    mode: Mode,
) -> None:
    proxy = await start_proxy()
    target = ["--url", proxy.management_url, "--token", ADMIN_TOKEN]
    code = await asyncio.to_thread(cli_main, ["on", *flags, "--reason", "Upgrade", *target])
    assert code == 0
    assert "maintenance: ON" in capsys.readouterr().out
    (switch,) = [s for s in proxy.runtime.store.current.snapshot.switches if s.enabled]
    assert (switch.source, switch.reason, switch.mode) == ("admin-api", "Upgrade", mode)
    async with proxy.session.get(
        f"{proxy.management_url}/api/maintenance", headers=proxy.admin_headers
    ) as response:
        assert (await response.json())["switch"]["mode"] == str(mode)


def test_read_only_is_documented_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["on", "--help"])
    assert exited.value.code == 0
    assert "--read-only" in capsys.readouterr().out
