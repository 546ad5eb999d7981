"""A stand-in ``kubectl`` for running ``kind/e2e.sh`` without a cluster.

No cluster can run here, so ``tests/test_kind.py`` runs the real script against a real ``mwm``
in its cluster-less mode, with this program first on ``PATH`` as ``kubectl``.  It answers
exactly the calls the script makes, in kubectl's output formats, by acting on what stands in
for the cluster: scaling the Deployment makes the demo app's health check fail or pass, the
ServiceChecker's ``spec`` is mwm's local state file (a merge patch edits it), its
``status.maintenance.active`` is mwm's ``/status``, and the release's Secret holds the bypass
token.  Any other call fails loudly, so the script cannot drift from what is emulated.

The state lives in the JSON file named by ``FAKE_KUBECTL_STATE``; each call is appended to
its ``log`` file, one JSON argv per line, for the test to assert on.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

APP = "shop"


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["FAKE_KUBECTL_STATE"])
    state = json.loads(state_path.read_text())
    with Path(state["log"]).open("a") as log:
        log.write(json.dumps(argv) + "\n")
    args, flags = _parse(argv)
    if flags.get("n", flags.get("namespace")) != state["namespace"]:
        return _refuse(argv, "wrong or missing namespace")
    match args:
        case ["get", "deployment", name] if name == APP and _jsonpath(flags) == ".spec.replicas":
            print(state["replicas"], end="")
        case ["get", "svcc", name] if name == APP and _jsonpath(flags) == ".spec.maintenance":
            switch = _read_spec(state).get("maintenance")
            print("" if switch is None else json.dumps(switch, separators=(",", ":")), end="")
        case ["get", "svcc", name] if (
            name == APP and _jsonpath(flags) == ".status.maintenance.active"
        ):
            active = _get_json(f"{state['management_url']}/status")["maintenance"]["active"]
            print("true" if active else "false", end="")
        case ["get", "secret"] if _selects_release(flags) and _template_reads(
            flags, "bypass-token"
        ):
            print(base64.b64encode(state["bypass_token"].encode()).decode(), end="")
        case ["scale", target] if target == f"deployment/{APP}" and "replicas" in flags:
            replicas = int(flags["replicas"])
            health = "up" if replicas > 0 else "down"
            _post(f"{state['app_url']}/_demo/health/{health}")
            state["replicas"] = replicas
            state_path.write_text(json.dumps(state))
            print(f"deployment.apps/{APP} scaled")
        case ["patch", "svcc", name] if name == APP and flags.get("type") == "merge":
            _write_spec(state, _merge(_read_spec(state), json.loads(flags["p"])["spec"]))
            print(f"servicechecker.maintenance.mamrezb.com/{APP} patched")
        case ["patch", "svcc", name] if name == APP and flags.get("type") == "json":
            spec = _read_spec(state)
            for operation in json.loads(flags["p"]):
                if operation["op"] != "add" or not operation["path"].startswith("/spec/"):
                    return _refuse(argv, "JSON patch not emulated")
                (member,) = operation["path"].removeprefix("/spec/").split("/")
                spec[member] = operation["value"]
            _write_spec(state, spec)
            print(f"servicechecker.maintenance.mamrezb.com/{APP} patched")
        case ["rollout", "status", target] if target == f"deployment/{APP}":
            print(f'deployment "{APP}" successfully rolled out')
        case _:
            return _refuse(argv, "not emulated")
    return 0


def _get_json(url: str) -> Any:
    _require_loopback(url)
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (checked above)
        return json.load(response)


def _post(url: str) -> None:
    _require_loopback(url)
    request = urllib.request.Request(url, b"", method="POST")  # noqa: S310 (checked above)
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 (checked above)
        pass


def _require_loopback(url: str) -> None:
    """Only the test's own servers on this machine are ever called."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise ValueError(f"refusing to call {url}")


def _parse(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional arguments and flags (``-n X``, ``--type X``, ``--replicas=N``, ``-oX``)."""
    args: list[str] = []
    flags: dict[str, str] = {}
    words = iter(argv)
    for word in words:
        if word.startswith("-"):
            name, sep, value = word.lstrip("-").partition("=")
            flags[name] = value if sep else next(words)
        else:
            args.append(word)
    return args, flags


def _jsonpath(flags: dict[str, str]) -> str | None:
    output = flags.get("o", flags.get("output", ""))
    if output.startswith("jsonpath={") and output.endswith("}"):
        return output[len("jsonpath={") : -1]
    return None


def _selects_release(flags: dict[str, str]) -> bool:
    return flags.get("l", flags.get("selector")) == "app.kubernetes.io/instance=mwm"


def _template_reads(flags: dict[str, str], key: str) -> bool:
    return flags.get("o", "").startswith("go-template=") and f'index .data "{key}"' in flags["o"]


def _read_spec(state: dict[str, Any]) -> dict[str, Any]:
    document = yaml.safe_load(Path(state["state_file"]).read_text())
    spec: dict[str, Any] = document["spec"]
    return spec


def _write_spec(state: dict[str, Any], spec: dict[str, Any]) -> None:
    """Replace the file atomically, as an API write is: mwm never reads half a document."""
    path = Path(state["state_file"])
    document = yaml.safe_load(path.read_text())
    document["spec"] = spec
    partial = path.with_suffix(".partial")
    partial.write_text(yaml.safe_dump(document, sort_keys=False))
    partial.replace(path)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``null`` removes a member, objects merge, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _refuse(argv: list[str], why: str) -> int:
    print(f"fake kubectl: {why}: {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
