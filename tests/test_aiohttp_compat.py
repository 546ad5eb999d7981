"""aiohttp's private parts are reached only through :mod:`proxy.aiohttp_compat`, and
checked there once before ``mwm run`` listens (issue 12).

- The installed aiohttp has every internal; taking any one away (deleting it, or renaming
  what aiohttp's own code reads) makes the start-up check fail with the one line naming it,
  and ``mwm run`` exit 1 with that line, before it listens.
- No module of ``proxy/`` or ``controller/`` but the compat one reaches a private name:
  no ``obj._name`` (other than ``self._name`` / ``cls._name``), no ``getattr(obj, "_name")``,
  no private name or private module imported from aiohttp, and no class deriving from an
  aiohttp class uses, sets or overrides a private name its aiohttp bases have.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import (
    base_protocol,
    client_proto,
    http_exceptions,
    http_parser,
    web,
    web_log,
    web_protocol,
)

from proxy import aiohttp_compat
from proxy.aiohttp_compat import INTERNALS, SUPPORTED, AiohttpIncompatible, check_aiohttp
from tests.mwmprocess import ROOT, clean_env

COMPAT = ROOT / "proxy" / "aiohttp_compat.py"
PACKAGES = ("proxy", "controller")

ALLOWED_PRIVATE_ACCESS = {
    ("proxy/settings.py", "_replace"),  # urllib.parse.SplitResult, a stdlib namedtuple
}
"""``(file, attribute)``: private attributes of objects that are not aiohttp's."""


def _line(*names: str) -> str:
    return f"mwm needs aiohttp's {', '.join(names)} ({SUPPORTED}); installed: {aiohttp.__version__}"


# --- The check passes on the installed aiohttp, and fails for each internal taken away ----


def test_installed_aiohttp_has_every_internal() -> None:
    assert aiohttp_compat.missing_internals() == []
    check_aiohttp()


def _renamed(function: Callable[..., object], name: str) -> types.FunctionType:
    """A copy of ``function`` in which aiohttp reads ``name`` under another name: what a
    release renaming a private attribute looks like to the check."""
    assert isinstance(function, types.FunctionType)
    code = function.__code__
    assert name in code.co_names
    renamed = code.replace(
        co_names=tuple(f"{n}_renamed" if n == name else n for n in code.co_names)
    )
    copy = types.FunctionType(
        renamed,
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    return copy


def _drop_slot(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    owner = next(c for c in web.RequestHandler.__mro__ if name in vars(c))
    monkeypatch.delattr(owner, name)


class _RewordingParser(http_parser.HttpRequestParserPy):
    """aiohttp's Python parser, with another text for too many headers."""

    def feed_data(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().feed_data(data, *args, **kwargs)
        except http_exceptions.BadHttpMessage as exc:
            if exc.message == aiohttp_compat.TOO_MANY_HEADERS:
                raise http_exceptions.BadHttpMessage("Too many header fields") from None
            raise


def _line_too_long_without_limit(self: Exception, line: object, *args: object) -> None:
    http_exceptions.BadHttpMessage.__init__(self, f"line too long: {line!r}")  # type: ignore[arg-type]
    self.args = (line,)


def _rename_in(monkeypatch: pytest.MonkeyPatch, cls: type, attribute: str, name: str) -> None:
    monkeypatch.setattr(cls, attribute, _renamed(vars(cls)[attribute], name))


def _rename_in_property(monkeypatch: pytest.MonkeyPatch, cls: type, prop: str, name: str) -> None:
    fget = vars(cls)[prop].fget
    monkeypatch.setattr(cls, prop, property(_renamed(fget, name)))


TAKEN_AWAY: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    **{
        f"RequestHandler.{name}": (lambda mp, name=name: _drop_slot(mp, name))  # type: ignore[misc]
        for name in (
            "_messages",
            "_request_count",
            "_waiter",
            "_upgraded",
            "_payload_parser",
            "_request_in_progress",
            "_loop",
        )
    },
    "web_protocol._ErrInfo": lambda mp: mp.delattr(web_protocol, "_ErrInfo"),
    "parser message 'Too many headers received'": lambda mp: mp.setattr(
        aiohttp_compat, "HttpRequestParser", _RewordingParser
    ),
    "LineTooLong.args[1] (the limit)": lambda mp: mp.setattr(
        http_exceptions.LineTooLong, "__init__", _line_too_long_without_limit
    ),
    "RawRequestMessage._replace": lambda mp: mp.setattr(http_parser, "RawRequestMessage", tuple),
    "Server._kwargs": lambda mp: _rename_in(mp, web.Server, "__init__", "_kwargs"),
    "Server._loop": lambda mp: _rename_in(mp, web.Server, "__init__", "_loop"),
    "AppRunner._make_server": lambda mp: _rename_in(mp, web.BaseRunner, "setup", "_make_server"),
    "StreamResponse._keep_alive": lambda mp: mp.delattr(web.StreamResponse, "_keep_alive"),
    "StreamResponse._eof_sent": lambda mp: _rename_in_property(
        mp, web.StreamResponse, "prepared", "_eof_sent"
    ),
    "StreamResponse._body_length": lambda mp: mp.delattr(web.StreamResponse, "_body_length"),
    "ClientSession._retry_connection": lambda mp: _rename_in(
        mp, aiohttp.ClientSession, "_request", "_retry_connection"
    ),
    "AccessLogger._format_line": lambda mp: _rename_in(
        mp, web_log.AccessLogger, "log", "_format_line"
    ),
    "client_proto.ResponseHandler": lambda mp: mp.delattr(
        client_proto.ResponseHandler, "start_timeout"
    ),
    "ResponseHandler.data_received queueing answers with feed_data": lambda mp: _rename_in(
        mp, client_proto.ResponseHandler, "data_received", "feed_data"
    ),
    "BaseProtocol._drain_helper": lambda mp: mp.delattr(
        base_protocol.BaseProtocol, "_drain_helper"
    ),
    "web_protocol.HttpRequestParser": lambda mp: mp.delattr(web_protocol, "HttpRequestParser"),
    **{
        f"BaseProtocol.{name}": (lambda mp, name=name: mp.delattr(base_protocol.BaseProtocol, name))  # type: ignore[misc]
        for name in ("_pause_transport_reading", "_resume_transport_reading")
    },
    **{
        f"BaseProtocol.{name}": (lambda mp, name=name: mp.delattr(base_protocol.BaseProtocol, name))  # type: ignore[misc]
        for name in ("_reading_paused", "_buffer_paused")
    },
    "ResponseHandler read timer": lambda mp: _rename_in(
        mp, client_proto.ResponseHandler, "data_received", "_reschedule_timeout"
    ),
}
"""How each internal of :data:`INTERNALS` is taken away, as an aiohttp release could."""


def test_every_internal_has_a_test() -> None:
    assert sorted(TAKEN_AWAY) == sorted(internal.name for internal in INTERNALS)


@pytest.mark.parametrize("name", sorted(TAKEN_AWAY))
def test_start_up_check_names_a_missing_internal(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    TAKEN_AWAY[name](monkeypatch)
    with pytest.raises(AiohttpIncompatible) as raised:
        check_aiohttp()
    assert raised.value.code == _line(name)
    assert aiohttp_compat.missing_internals() == [name]


def test_every_missing_internal_is_named_on_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    TAKEN_AWAY["RequestHandler._messages"](monkeypatch)
    TAKEN_AWAY["AccessLogger._format_line"](monkeypatch)
    with pytest.raises(AiohttpIncompatible) as raised:
        check_aiohttp()
    assert raised.value.code == _line("RequestHandler._messages", "AccessLogger._format_line")


_RUN_WITHOUT = """
import runpy, sys
from aiohttp import web
del web.RequestHandler._messages  # as a release without it would have it
sys.argv = ["mwm", "run"]
runpy.run_module("proxy.cli", run_name="__main__", alter_sys=True)
"""


def test_mwm_run_refuses_to_start_with_one_line() -> None:
    """``mwm run`` on an aiohttp without ``RequestHandler._messages``: importing mwm still
    works, and the check stops it before it listens, with one line and status 1."""
    env = clean_env(
        {
            "MWM_UPSTREAM__URL": "http://127.0.0.1:9",
            "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
            "MWM_LISTEN__PUBLIC_PORT": "0",
            "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
            "MWM_LISTEN__MANAGEMENT_PORT": "0",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [_line("RequestHandler._messages")], result.stderr
    assert result.stdout == ""


# --- No private access outside the compat module -------------------------------------------


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != COMPAT:
                relative = path.relative_to(ROOT).as_posix()
                yield relative, ast.parse(path.read_text(), filename=relative)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_reaches(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``(line, attribute)`` for each private name reached on another object."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            yield node.lineno, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            yield node.lineno, node.args[1].value


def test_no_private_attribute_outside_the_compat_module() -> None:
    found = [
        f"{path}:{line}: .{attribute}"
        for path, tree in _sources()
        for line, attribute in _private_reaches(tree)
        if (path, attribute) not in ALLOWED_PRIVATE_ACCESS
    ]
    assert found == [], "reach aiohttp's private parts through proxy/aiohttp_compat.py"


def test_no_private_aiohttp_import_outside_the_compat_module() -> None:
    found: list[str] = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiohttp"):
                module = node.module or ""
                names = [alias.name for alias in node.names]
                if any(_private(part) for part in module.split(".")) or any(map(_private, names)):
                    found.append(f"{path}:{node.lineno}: from {module} import {', '.join(names)}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == "aiohttp" and any(map(_private, parts)):
                        found.append(f"{path}:{node.lineno}: import {alias.name}")
    assert found == []


def _aiohttp_names(cls: type) -> set[str]:
    """The private names an aiohttp class has: its attributes and slots, and every
    ``self._name`` its own code uses."""
    names = {name for name in vars(cls) if _private(name)}
    names.update(name for name in getattr(cls, "__slots__", ()) if _private(name))
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # compiled: its attributes are all there is
        return names
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.add(node.attr)
    return names


def _own_names(node: ast.ClassDef) -> set[str]:
    """The private names a class of ours uses on ``self`` or defines in its body."""
    names = set()
    for child in ast.walk(node):
        if (
            isinstance(child, ast.Attribute)
            and _private(child.attr)
            and isinstance(child.value, ast.Name)
            and child.value.id in ("self", "cls")
        ):
            names.add(child.attr)
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and _private(
            statement.name
        ):
            names.add(statement.name)
        elif isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name) and _private(t.id))
    return names


def test_no_class_of_ours_uses_a_private_name_of_its_aiohttp_bases() -> None:
    """``self._waiter`` in a ``RequestHandler`` subclass is aiohttp's ``_waiter``; a method
    named ``_make_server`` overrides aiohttp's.  Both go through the compat module."""
    checked: list[str] = []
    found: list[str] = []
    for path, tree in _sources():
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            cls = getattr(module, node.name, None)
            if not isinstance(cls, type):
                continue
            aiohttp_bases = [c for c in cls.__mro__ if c.__module__.startswith("aiohttp")]
            if not aiohttp_bases:
                continue
            checked.append(node.name)
            theirs = set().union(*map(_aiohttp_names, aiohttp_bases))
            found.extend(
                f"{path}: {node.name}.{name}" for name in sorted(_own_names(node) & theirs)
            )
    assert {"HardenedConnection", "PrebuiltResponse", "MaskingAccessLogger"} <= set(checked)
    assert found == []


def test_the_check_sees_what_it_must() -> None:
    """The rules above do catch what they are for (a guard against a check that finds
    nothing because it looks at nothing)."""
    sample = ast.parse("request._payload_writer\nself._x\ngetattr(s, '_retry_connection')\n")
    assert [attribute for _, attribute in _private_reaches(sample)] == [
        "_payload_writer",
        "_retry_connection",
    ]
    assert "_waiter" in _aiohttp_names(web.RequestHandler)
    assert "_format_line" in _aiohttp_names(web_log.AccessLogger)
    assert "_eof_sent" in _aiohttp_names(web.StreamResponse)
