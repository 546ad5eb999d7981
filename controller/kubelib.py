"""kubernetes-asyncio without its 700-odd model modules: the one place that imports it.

``import kubernetes_asyncio.config`` runs the package's ``__init__``, which imports
``kubernetes_asyncio.client``, whose ``__init__`` (and ``client.models``'s, and
``client.api``'s) import every generated API and model class: some 800 modules, ~37 MiB of
memory and ~0.4 s of start-up per process, of which the controller uses a handful (it reads
raw JSON through ``ApiClient.call_api``; only the leader election builds ``V1Lease``
objects).

So before importing anything from the library, this module puts those four packages in
``sys.modules`` as *lazy* packages: real package modules (their real ``__path__``, so every
submodule imports normally) whose ``__init__`` is not run.  Instead the ``__init__``'s
source is read (parsed, never executed) for the names it would bind, ``V1Lease`` ->
``kubernetes_asyncio.client.models.v1_lease``, and a module ``__getattr__`` (PEP 562)
imports a name's module the first time it is asked for.  That is how the library itself
reaches them (``client.CoordinationV1Api``, ``getattr(kubernetes_asyncio.client.models,
klass)`` in ``ApiClient.deserialize``), so it works unchanged: configuration, the
in-cluster and kubeconfig loaders with exec plugins, OIDC and token refresh, ``ApiClient``
and the election are the library's own code.

When anything about the packages is not as expected (an ``__init__`` doing more than
importing and assigning constants, a missing file) the plain import is used and a debug
line says why: the trick can cost memory, never the controller.  ``MWM_KUBE_EAGER_IMPORT=1``
in the environment also forces the plain import: a diagnostic switch (``bench.footprint``
compares both), not a setting.  When the library was already imported (tests), it is used
as it is.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

EAGER_IMPORT_ENV = "MWM_KUBE_EAGER_IMPORT"
"""Set to ``1`` to import kubernetes-asyncio whole (a diagnostic switch, not a setting)."""

ROOT = "kubernetes_asyncio"
LAZY_PACKAGES = (ROOT, f"{ROOT}.client", f"{ROOT}.client.api", f"{ROOT}.client.models")
"""The packages whose ``__init__`` imports everything, parents first."""


class _Unexpected(Exception):
    """A package does not look as this module expects: use the plain import."""


def _lazy_names(package: str, source: str) -> tuple[dict[str, str], dict[str, object]]:
    """From an ``__init__``'s source: the names its imports bind, each as
    ``module:attribute`` (``module:`` for the module itself, see :func:`_resolve`), and its
    constant assignments.  Anything else in it raises :class:`_Unexpected`."""
    names: dict[str, str] = {}
    constants: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                continue
            module = node.module or ""
            if node.level or not module.startswith(package + "."):
                raise _Unexpected(f"{package}: imports from {module or '.'}")
            for alias in node.names:
                if alias.name == "*":
                    raise _Unexpected(f"{package}: imports * from {module}")
                names[alias.asname or alias.name] = f"{module}:{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith(package + "."):
                    raise _Unexpected(f"{package}: imports {alias.name}")
                if alias.asname:
                    names[alias.asname] = f"{alias.name}:"
                # ``import package.sub`` binds only what a submodule import binds anyway
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError as exc:
                raise _Unexpected(f"{package}: computes {node.targets[0].id}") from exc
        else:
            raise _Unexpected(f"{package}: line {node.lineno} is not an import or a constant")
    return names, constants


def _resolve(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def _module_getattr(module: types.ModuleType, names: dict[str, str]) -> Callable[[str], object]:
    package = module.__name__
    path = list(module.__path__)

    def __getattr__(name: str) -> object:  # PEP 562
        target = names.get(name)
        if target is not None:
            value = _resolve(target)
        elif not name.startswith("__") and importlib.machinery.PathFinder.find_spec(
            f"{package}.{name}", path
        ):
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(module, name, value)  # the next access is a plain attribute
        return value

    return __getattr__


def _lazy_package(name: str, search_path: list[str] | None) -> types.ModuleType:
    spec = importlib.machinery.PathFinder.find_spec(name, search_path)
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        raise _Unexpected(f"{name}: no package found")
    names, constants = _lazy_names(name, Path(spec.origin).read_text(encoding="utf-8"))
    module = importlib.util.module_from_spec(spec)  # creates it; runs nothing
    for key, value in constants.items():
        setattr(module, key, value)
    module.__getattr__ = _module_getattr(module, names)  # type: ignore[method-assign]
    return module


def _install_lazy() -> None:
    created: dict[str, types.ModuleType] = {}
    search_path: list[str] | None = None
    for name in LAZY_PACKAGES:  # parents first: a child is found on its parent's path
        parent = name.rpartition(".")[0]
        if parent:
            search_path = list(created[parent].__path__)
        created[name] = _lazy_package(name, search_path)
    for name, module in created.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(created[parent], child, module)
    sys.modules.update(created)  # last: a failure above leaves nothing behind


def _install() -> str:
    """Make ``kubernetes_asyncio`` importable; return how: ``lazy``, ``eager`` (the plain
    import), or ``preloaded`` (someone imported it before)."""
    if any(name == ROOT or name.startswith(ROOT + ".") for name in sys.modules):
        return "preloaded"
    if os.environ.get(EAGER_IMPORT_ENV, "") not in ("", "0"):
        importlib.import_module(ROOT)
        return "eager"
    try:
        _install_lazy()
    except (_Unexpected, OSError, SyntaxError, ValueError) as exc:
        log.debug("kubernetes_asyncio imported whole (%s)", exc)
        importlib.import_module(ROOT)
        return "eager"
    return "lazy"


MODE = _install()
"""How kubernetes-asyncio was imported: ``lazy``, ``eager`` or ``preloaded``."""

# The library's parts the controller uses; after _install, on purpose.
from kubernetes_asyncio import config as kube_config  # noqa: E402
from kubernetes_asyncio.client import ApiClient, Configuration  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402
from kubernetes_asyncio.config.config_exception import ConfigException  # noqa: E402
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection  # noqa: E402
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock  # noqa: E402

__all__ = [
    "MODE",
    "ApiClient",
    "ApiException",
    "ConfigException",
    "Configuration",
    "LeaseLock",
    "electionconfig",
    "kube_config",
    "leaderelection",
]
