"""The runtime is locked apart from the test, bench and build tools, and the locks agree.

requirements.lock is what the service runs on (scripts/serve, the Docker image);
requirements-test.lock and requirements-bench.lock add what scripts/test and bench/ need, and
requirements-build.lock the build backend (scripts/lock makes all four). Everything here reads
files and the installed packages' metadata: no network, no install.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from itertools import combinations
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = {
    "runtime": "requirements.lock",
    "test": "requirements-test.lock",
    "bench": "requirements-bench.lock",
    "build": "requirements-build.lock",
}
# What each group's requirements pull in that the runtime must not carry either.
# (langgraph and its checkpoint base are runtime: langchain's agent, AGENT_GROUNDING=tools, runs
# on them; the MySQL checkpointer the bench compares with is not)
HEAVY_TRANSITIVE = {"hypothesis", "numpy", "pillow", "langchain-classic"}


@dataclass
class Lock:
    """A hash-pinned requirements file: every version and hash pinned for each package."""

    versions: dict[NormalizedName, set[str]] = field(default_factory=dict)
    hashes: dict[tuple[NormalizedName, str], set[str]] = field(default_factory=dict)
    header: str = ""


def read_lock(group: str) -> Lock:
    lock = Lock()
    pinned: tuple[NormalizedName, str] | None = None
    for line in (ROOT / LOCKS[group]).read_text().splitlines():
        if line.startswith("#"):
            lock.header += line + "\n"
        elif pin := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line):
            pinned = (canonicalize_name(pin[1]), pin[2])
            lock.versions.setdefault(pinned[0], set()).add(pinned[1])
            lock.hashes.setdefault(pinned, set())
        elif pinned and (digest := re.search(r"--hash=(\S+)", line)):
            lock.hashes[pinned].add(digest[1])
        elif line.strip() and not line.startswith(" "):
            pytest.fail(f"{LOCKS[group]}: not a pinned requirement: {line!r}")
    return lock


def group_requirements(group: str) -> list[Requirement]:
    """What pyproject.toml asks of a group (the build group is a PEP 735 dependency group)."""
    project = PYPROJECT["project"]
    match group:
        case "runtime":
            lines = project["dependencies"]
        case "test":
            lines = project["optional-dependencies"]["dev"]
        case "bench":
            lines = project["optional-dependencies"]["bench"]
        case "build":
            lines = PYPROJECT["dependency-groups"]["build"]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("group", LOCKS)
def test_every_lock_pins_every_package_with_hashes_for_every_platform(group: str) -> None:
    lock = read_lock(group)
    assert lock.versions
    assert all(lock.hashes.values()), [pin for pin, hashes in lock.hashes.items() if not hashes]
    assert "--universal --python-version 3.11 --generate-hashes" in lock.header


def test_runtime_lock_holds_no_test_bench_or_build_package() -> None:
    runtime = read_lock("runtime").versions
    tools = {
        canonicalize_name(requirement.name)
        for group in ("test", "bench", "build")
        for requirement in group_requirements(group)
    }
    assert {"pytest", "schemathesis", "playwright", "ruff", "mypy"} <= tools
    assert "langgraph-checkpoint-mysql" in tools
    assert sorted((tools | HEAVY_TRANSITIVE) & runtime.keys()) == []


@pytest.mark.parametrize("group", LOCKS)
def test_each_lock_pins_what_its_group_asks_for(group: str) -> None:
    versions = read_lock(group).versions
    for requirement in group_requirements(group):
        pinned = versions.get(canonicalize_name(requirement.name), set())
        assert pinned, f"{LOCKS[group]} does not pin {requirement}"
        assert all(requirement.specifier.contains(v) for v in pinned), (requirement, pinned)


def installed_closure(roots: list[Requirement]) -> set[NormalizedName]:
    """The distributions `roots` need here, from the installed packages' own metadata."""
    needed: set[NormalizedName] = set()
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    todo = list(roots)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        needed.add(name)
        for line in metadata.requires(requirement.name) or []:
            dependency = Requirement(line)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append(dependency)
    return needed


def test_runtime_lock_alone_installs_every_runtime_dependency() -> None:
    """Installed with --no-deps, the runtime lock must hold the whole closure, extras included."""
    runtime = read_lock("runtime").versions
    needed = installed_closure(group_requirements("runtime"))
    assert {"uvloop", "httptools", "greenlet", "asyncmy", "tqdm"} <= needed
    assert sorted(needed - runtime.keys()) == []


@pytest.mark.parametrize("group", ["test", "bench"])
def test_test_and_bench_locks_hold_the_runtime_lock_as_it_is(group: str) -> None:
    runtime, other = read_lock("runtime"), read_lock(group)
    assert {pin: other.hashes.get(pin) for pin in runtime.hashes} == runtime.hashes


@pytest.mark.parametrize(("one", "other"), list(combinations(LOCKS, 2)))
def test_locks_agree_on_every_package_they_share(one: str, other: str) -> None:
    a, b = read_lock(one), read_lock(other)
    shared = a.versions.keys() & b.versions.keys()
    assert {n: a.versions[n] for n in shared} == {n: b.versions[n] for n in shared}
    shared_pins = a.hashes.keys() & b.hashes.keys()
    assert {p: a.hashes[p] for p in shared_pins} == {p: b.hashes[p] for p in shared_pins}


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def third_party_imports(start: list[Path]) -> dict[str, Path]:
    """Top-level third-party modules imported from `start`, following first-party imports."""
    first_party = {"session_service", "tests", "bench"}
    found: dict[str, Path] = {}
    todo, seen = list(start), set(start)
    while todo:
        path = todo.pop()
        for module in imported_modules(path):
            top = module.partition(".")[0]
            if top in first_party:
                base = ROOT / "src" if top == "session_service" else ROOT
                parts = base.joinpath(*module.split("."))
                for candidate in (parts.with_suffix(".py"), parts / "__init__.py"):
                    if candidate.is_file() and candidate not in seen:
                        seen.add(candidate)
                        todo.append(candidate)
            elif top not in sys.stdlib_module_names:
                found.setdefault(top, path)
    return found


@pytest.mark.parametrize(
    ("code", "groups"),
    [
        ("src", ["runtime"]),
        ("bench", ["runtime", "bench"]),
        ("tests", ["runtime", "test", "bench"]),
    ],
)
def test_code_imports_only_what_its_groups_lock(code: str, groups: list[str]) -> None:
    locked = set().union(*(read_lock(group).versions for group in groups))
    distributions = metadata.packages_distributions()
    missing = {}
    for module, path in third_party_imports(sorted((ROOT / code).rglob("*.py"))).items():
        names = {canonicalize_name(d) for d in distributions.get(module, [])}
        if not names & locked:
            missing[module] = (str(path.relative_to(ROOT)), sorted(names) or "not installed")
    assert missing == {}


def test_dockerfile_installs_only_the_runtime_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    builder = (ROOT / "scripts" / "runtime-venv").read_text()
    mentioned = set(re.findall(r"requirements[\w-]*\.lock", dockerfile + builder))
    assert mentioned == {"requirements.lock", "requirements-build.lock"}
    assert not re.search(r"--extra|\[(dev|bench)\]|pip install", dockerfile)
    assert re.findall(r"RUN bash scripts/runtime-venv (\S+)", dockerfile) == ["/venv", "/venv"]
    assert re.findall(r"COPY --from=build (\S+)", dockerfile) == ["/venv"]
    # Into the image's venv goes requirements.lock; the build lock only into the throwaway one.
    installs = [line for line in builder.splitlines() if re.search(r"-r \S+\.lock", line)]
    into_image = [line for line in installs if "into_target" in line]
    assert len(into_image) == 1
    assert "requirements.lock" in into_image[0]
    assert all("into_target" not in line for line in installs if "requirements-build" in line)


def test_serve_installs_the_runtime_and_test_adds_test_and_bench() -> None:
    assert '_venv.sh" runtime\n' in (ROOT / "scripts" / "serve").read_text()
    assert '_venv.sh" runtime test bench\n' in (ROOT / "scripts" / "test").read_text()


def test_each_group_is_installed_once_into_one_venv(tmp_path: Path) -> None:
    """serve after test, or test after serve, installs only the groups the venv lacks."""
    venv, calls = tmp_path / "venv", tmp_path / "calls"
    (venv / "bin").mkdir(parents=True)
    fake_python = venv / "bin" / "python"  # records what pip would have been asked
    fake_python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake_python.chmod(0o755)

    def source(*groups: str) -> list[list[str]]:
        before = calls.read_text().splitlines() if calls.exists() else []
        env = {**os.environ, "SESSION_SERVICE_VENV": str(venv), "PYTHON": sys.executable}
        script = f'source "{ROOT}/scripts/_venv.sh" "$@"'
        subprocess.run(["bash", "-c", script, "_venv", *groups], env=env, check=True)
        after = calls.read_text().splitlines() if calls.exists() else []
        asked = [line.split() for line in after[len(before) :]]
        return [[Path(w).name for w in args if w.endswith(".lock") or w == "-e"] for args in asked]

    assert source("runtime") == [["requirements.lock", "requirements-build.lock"], ["-e"]]
    assert source("runtime") == []
    assert source("runtime", "test", "bench") == [
        ["requirements-test.lock", "requirements-bench.lock"]
    ]
    assert source("runtime") == []
    assert source("runtime", "test", "bench") == []
    assert sorted(p.name for p in (venv / ".installed").iterdir()) == [
        "bench",
        "build",
        "package",
        "runtime",
        "test",
    ]


def test_the_image_allows_for_its_migration_and_leaves_secrets_out() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [healthcheck] = re.findall(r"^HEALTHCHECK .*$", dockerfile, re.MULTILINE)
    assert re.search(r"--start-period=\d+s", healthcheck)  # `migrate` runs before `serve`
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".env.*", "!.env.example"} <= set(ignored)
