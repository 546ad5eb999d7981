"""The container image, built and run for real (Docker; the classic builder).

No registry is reachable from these machines, so the Dockerfile's base image cannot be pulled:
a stand-in is built (``mmdebstrap`` of Debian bookworm with python3.11, laid out like the
official image: ``python`` on PATH, the standard library under /usr/local/lib/python3.11) and
passed as the ``PYTHON_IMAGE`` build argument.  The image is then run as the README says:
``check-config``; read-only as UID 10001 with a tmpfs on /tmp in front of a small upstream
container, forwarding, then serving the 503 page once the admin API (and, with two workers, the
local state file) switches maintenance on; ``docker stop`` ends it with status 0 well within the
drain.  Everything the tests create (containers, network, images, and a dockerd they started)
is removed at the end; the whole cycle takes about two minutes.

Runs when a Docker daemon answers.  Without one it starts dockerd itself when ``CI`` (or
``MWM_IMAGE_TESTS``) is set and it runs as root, and FAILS if it cannot, so that CI never passes
without having built the image; elsewhere it skips.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_dockerfile import DOCKERFILE, parse_dockerfile

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = bool(os.environ.get("CI") or os.environ.get("MWM_IMAGE_TESTS"))
SUFFIX = f"{os.getpid()}"
ADMIN_TOKEN = "image-test-admin-token"
DRAIN_TIMEOUT_S = 30  # MWM_SHUTDOWN__DRAIN_TIMEOUT_S's default
# Build (~1 min) and stand-in (~30 s) happen in the first test's fixtures.
pytestmark = pytest.mark.timeout(600)


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"CI must build and run the image, but {reason}")
    pytest.skip(f"{reason} (set CI=1 or MWM_IMAGE_TESTS=1, as root, to start dockerd here)")


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result


def daemon_answers() -> bool:
    try:
        return (
            docker("version", "--format", "{{.Server.Version}}", timeout=20, check=False).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Docker daemon: the one running, else one started here (and stopped by its PID)."""
    if shutil.which("docker") is None:
        unavailable("there is no docker client (apt-get install docker.io)")
    if daemon_answers():
        yield
        return
    dockerd = shutil.which("dockerd")
    if not REQUIRED or dockerd is None or os.geteuid() != 0:
        unavailable("no Docker daemon answers and dockerd cannot be started here")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [dockerd, "--pidfile", str(log.with_name("dockerd.pid"))],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not daemon_answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def standin(daemon: None) -> Iterator[str]:
    """An image standing in for the Dockerfile's default base, named after it."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        unavailable("mmdebstrap is missing (apt-get install mmdebstrap)")
    base = parse_dockerfile(DOCKERFILE.read_text()).global_args["PYTHON_IMAGE"]
    name = f"mwm-standin-{SUFFIX}/{base}"
    bundle = "/etc/ssl/certs/ca-certificates.crt"  # pip behind the TLS-intercepting proxy
    debootstrap = subprocess.Popen(
        [
            mmdebstrap,
            "--quiet",
            "--variant=minbase",
            "--include=python3.11,python3.11-venv,python3-venv,python-is-python3,passwd",
            f"--customize-hook=upload {bundle} /usr/local/share/ca-bundle.crt",
            # The official image's layout, which the Dockerfile relies on (Debian's
            # /usr/local/lib/python3.11 holds only an empty dist-packages).
            '--customize-hook=rm -r "$1/usr/local/lib/python3.11"'
            ' && ln -s /usr/lib/python3.11 "$1/usr/local/lib/python3.11"',
            "bookworm",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    imported = subprocess.run(
        [
            "docker",
            "import",
            "--change",
            "ENV PIP_CERT=/usr/local/share/ca-bundle.crt",
            "--change",
            "ENV SSL_CERT_FILE=/usr/local/share/ca-bundle.crt",
            "--change",
            'CMD ["python3"]',
            "-",
            name,
        ],
        stdin=debootstrap.stdout,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert debootstrap.stdout is not None
    assert debootstrap.stderr is not None
    debootstrap.stdout.close()
    with debootstrap.stderr:
        errors = debootstrap.stderr.read().decode(errors="replace")
    assert debootstrap.wait(timeout=60) == 0, f"mmdebstrap failed:\n{errors[-3000:]}"
    assert imported.returncode == 0, imported.stderr
    try:
        yield name
    finally:
        docker("rmi", "--force", name, check=False)


@pytest.fixture(scope="module")
def image(standin: str) -> Iterator[str]:
    """The Dockerfile, built unchanged on the stand-in base with the classic builder."""
    name = f"mwm-image-test-{SUFFIX}:latest"
    build = subprocess.run(
        ["docker", "build", "--build-arg", f"PYTHON_IMAGE={standin}", "-t", name, str(ROOT)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-2000:]
    try:
        yield name
    finally:
        docker("rmi", "--force", name, check=False)
        docker("image", "prune", "--force", check=False)  # the builder stage's dangling layers


@pytest.fixture(scope="module")
def network(daemon: None) -> Iterator[str]:
    name = f"mwm-image-test-{SUFFIX}"
    docker("network", "create", name)
    try:
        yield name
    finally:
        docker("network", "rm", name, check=False)


@dataclass
class Container:
    name: str
    ip: str

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr


def start(name: str, network: str, *args: str) -> Container:
    docker("run", "--detach", "--name", name, "--network", network, *args)
    inspect = json.loads(docker("inspect", name).stdout)[0]
    return Container(name, inspect["NetworkSettings"]["Networks"][network]["IPAddress"])


@pytest.fixture(scope="module")
def upstream(standin: str, network: str) -> Iterator[Container]:
    """The app behind the proxy: Python's http.server on the stand-in, port 8000."""
    name = f"mwm-upstream-{SUFFIX}"
    try:
        yield start(
            name,
            network,
            "--user",
            "65534:65534",
            "--workdir",
            "/usr/share/doc/python3.11",
            standin,
            "python3",
            "-m",
            "http.server",
            "8000",
        )
    finally:
        docker("rm", "--force", name, check=False)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_ready(container: Container, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http("GET", f"http://{container.ip}:8081/readyz")[0] == 200:
                return
        except OSError:
            pass
        state = json.loads(docker("inspect", container.name).stdout)[0]["State"]
        assert state["Running"], f"mwm exited ({state['ExitCode']}):\n{container.logs()}"
        assert time.monotonic() < deadline, f"mwm never became ready:\n{container.logs()}"
        time.sleep(0.3)


def stop(container: Container) -> tuple[float, int]:
    """``docker stop`` (SIGTERM, then SIGKILL after the grace period): seconds and exit code."""
    began = time.monotonic()
    docker("stop", "--time", str(DRAIN_TIMEOUT_S + 15), container.name, timeout=90)
    elapsed = time.monotonic() - began
    state = json.loads(docker("inspect", container.name).stdout)[0]["State"]
    return elapsed, state["ExitCode"]


def test_check_config_runs_in_the_image(image: str) -> None:
    result = docker("run", "--rm", image, "check-config", check=False)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_the_image_ships_no_pip_and_only_hash_checked_bytecode(image: str) -> None:
    # Every .pyc the interpreter would use, standard library and venv: flags 0b11 is
    # "checked hash" (PEP 552), valid whatever the timestamps of the files after COPY.
    script = """
import importlib.util, pathlib, sys, sysconfig
roots = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], "/opt/mwm/lib"}
stale, total = [], 0
for root in roots:
    for py in pathlib.Path(root).rglob("*.py"):
        pyc = pathlib.Path(importlib.util.cache_from_source(str(py)))
        if "site-packages" not in str(py) and "/opt/mwm" not in str(py) and not pyc.exists():
            continue  # test suites, idlelib...: compileall skips what does not compile
        total += 1
        if not pyc.exists() or int.from_bytes(pyc.read_bytes()[4:8], "little") != 0b11:
            stale.append(str(py))
print(total, len(stale), *stale[:20])
missing = [m for m in ("pip", "setuptools") if importlib.util.find_spec(m)]
print("installers:", *missing)
"""
    result = docker("run", "--rm", "--entrypoint", "python", image, "-c", script)
    counts, installers = result.stdout.splitlines()
    total, stale, *examples = counts.split()
    assert int(total) > 1000
    assert int(stale) == 0, f"{stale} modules without checked-hash bytecode, e.g. {examples}"
    assert installers == "installers:", "pip/setuptools ship in the runtime venv"
    listing = docker("run", "--rm", "--entrypoint", "ls", image, "/opt/mwm/bin").stdout.split()
    assert "mwm" in listing
    assert not [name for name in listing if name.startswith(("pip", "easy_install"))]


def test_read_only_as_10001_it_forwards_then_serves_503_and_stops_cleanly(
    image: str, network: str, upstream: Container
) -> None:
    name = f"mwm-proxy-{SUFFIX}"
    try:
        mwm = start(
            name,
            network,
            "--read-only",
            "--tmpfs",
            "/tmp",  # noqa: S108
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--env",
            "MWM_UPSTREAM__URL=http://" + upstream.name + ":8000",
            "--env",
            f"MWM_MANAGEMENT__ADMIN_TOKEN={ADMIN_TOKEN}",
            image,
        )
        wait_ready(mwm)
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        status, body = http("GET", f"http://{mwm.ip}:8080/")
        assert status == 200, body
        assert "Directory listing" in body  # http.server's page, through the proxy

        status, body = http(
            "PUT",
            f"http://{mwm.ip}:8081/api/maintenance",
            json.dumps({"enabled": True, "reason": "Image test"}).encode(),
            {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        )
        assert status == 200, body
        status, body = http("GET", f"http://{mwm.ip}:8080/", headers={"Accept": "text/html"})
        assert status == 503
        assert "Image test" in body
        assert "<html" in body.lower()

        elapsed, code = stop(mwm)
        assert code == 0, mwm.logs()
        assert elapsed < DRAIN_TIMEOUT_S, f"docker stop took {elapsed:.1f} s"
        assert "Traceback" not in mwm.logs()
    finally:
        docker("rm", "--force", name, check=False)


def test_two_workers_share_a_tmpfs_and_read_the_state_file(
    image: str, network: str, upstream: Container, tmp_path: Path
) -> None:
    state = tmp_path / "state.yaml"
    state.write_text("spec:\n  maintenance: {enabled: true, reason: From the state file}\n")
    state.chmod(0o644)
    tmp_path.chmod(0o755)
    name = f"mwm-workers-{SUFFIX}"
    try:
        mwm = start(
            name,
            network,
            "--read-only",
            "--tmpfs",
            "/tmp",  # noqa: S108
            "--volume",
            f"{state}:/etc/mwm/state.yaml:ro",
            "--env",
            "MWM_LISTEN__WORKERS=2",
            "--env",
            "MWM_SOURCE__LOCAL__FILE=/etc/mwm/state.yaml",
            "--env",
            "MWM_UPSTREAM__URL=http://" + upstream.name + ":8000",
            image,
        )
        wait_ready(mwm)
        for _ in range(4):  # connections spread over both workers
            status, body = http("GET", f"http://{mwm.ip}:8080/", headers={"Accept": "text/html"})
            assert status == 503
            assert "From the state file" in body
        elapsed, code = stop(mwm)
        assert code == 0, mwm.logs()
        assert elapsed < DRAIN_TIMEOUT_S
    finally:
        docker("rm", "--force", name, check=False)


def test_workers_without_a_writable_tmp_say_so_in_one_line(image: str) -> None:
    result = docker(
        "run", "--rm", "--read-only", "--env", "MWM_LISTEN__WORKERS=2", image, check=False
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("mwm: MWM_LISTEN__WORKERS=2 needs a writable temporary directory")
    assert "--tmpfs /tmp" in line
