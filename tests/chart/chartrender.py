"""Rendering the Helm chart for real, and checking what comes out.

``helm_python`` (the helm-python-sdk package) binds Helm v4's Go SDK: ``Chart.render``
runs Helm's own template engine, values coalescing and ``values.schema.json`` validation,
offline (``lookup`` finds nothing).  It is imported unconditionally: without it these tests
fail instead of being skipped.  Every rendered object is then validated with
``kubernetes-validate`` against the newest Kubernetes version it bundles, strictly (an
unknown field is an error), except kinds it does not know (custom resources), which the
tests check themselves.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "maintenance-window-manager"
CONFIG = REPO / "config"

JsonObject = dict[str, Any]

UPSTREAM = "http://shop.shop.svc.cluster.local:80"
BASE_VALUES: JsonObject = {"config": {"upstream": {"url": UPSTREAM}}}
"""The least a gateway install needs (the upstream has no usable default)."""

_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> JsonObject:
    """``override`` deep-merged onto a copy of ``base`` (as Helm merges ``-f`` files)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values(**override: Any) -> JsonObject:
    return merged(BASE_VALUES, override)


def render_files(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "mwm",
    namespace: str = "shop",
    chart: Path = CHART,
) -> dict[str, str]:
    """Template path -> rendered text, as ``helm template`` would print them."""
    with helm_python.Chart.load(chart) as loaded:
        return loaded.render(dict(values or {}), name=release, namespace=namespace, is_install=True)


def documents_of(text: str) -> list[JsonObject]:
    return [doc for doc in (yaml.safe_load(c) for c in _SEPARATOR.split(text)) if doc]


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "mwm",
    namespace: str = "shop",
    chart: Path = CHART,
) -> list[JsonObject]:
    """Every object the chart renders (NOTES.txt left out)."""
    files = render_files(values, release=release, namespace=namespace, chart=chart)
    return [
        doc
        for path, text in sorted(files.items())
        if not path.endswith("NOTES.txt")
        for doc in documents_of(text)
    ]


def notes(values: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
    files = render_files(values, **kwargs)
    (text,) = (text for path, text in files.items() if path.endswith("NOTES.txt"))
    return text


def kinds(objects: list[JsonObject]) -> list[str]:
    return sorted(obj["kind"] for obj in objects)


def only(objects: list[JsonObject], kind: str) -> JsonObject:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}: {kinds(objects)}"
    return found[0]


def all_of(objects: list[JsonObject], kind: str) -> list[JsonObject]:
    return [obj for obj in objects if obj["kind"] == kind]


KUBERNETES_VERSION = kubernetes_validate.latest_version()
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("maintenance.mamrezb.com/v1alpha1", "ServiceChecker"),
}
"""Custom resources kubernetes-validate has no schema for; tests check their shape."""


def validate_all(objects: list[JsonObject]) -> None:
    """Each object against Kubernetes' own schema, strictly."""
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def mwm_container(pod_spec: JsonObject) -> JsonObject:
    (container,) = (c for c in pod_spec["containers"] if c["name"] == "mwm")
    return container


def env_of(container: JsonObject) -> dict[str, str]:
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), f"an env var is set twice: {names}"
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def load_script(name: str) -> ModuleType:
    """A module from ``scripts/`` (not a package), by file name without ``.py``."""
    path = REPO / "scripts" / f"{name}.py"
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))  # as when run: its neighbours are importable
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parent_chart(
    root: Path, *, template: str, parent_values: JsonObject, alias: str = "mwm"
) -> Path:
    """A chart depending on this one (copied into its charts/), with one template."""
    parent = root / "shop"
    (parent / "templates").mkdir(parents=True)
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "shop",
                "version": "1.0.0",
                "dependencies": [
                    {"name": CHART.name, "version": "0.1.0", "alias": alias},
                ],
            }
        ),
        encoding="utf-8",
    )
    (parent / "values.yaml").write_text(yaml.safe_dump(parent_values), encoding="utf-8")
    (parent / "templates" / "app.yaml").write_text(template, encoding="utf-8")
    shutil.copytree(CHART, parent / "charts" / CHART.name)
    return parent
