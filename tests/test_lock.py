"""The lock (requirements/lock.txt) agrees with pyproject.toml and is what is installed.

``make lock`` regenerates it; ``make test`` / ``make demo`` install from it. These tests fail
when a dependency is added or re-ranged in pyproject.toml without re-locking, when the compiled
trio loses its exact pins, or when the environment was installed some other way.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMPILED_TRIO = {"torch": "2.11.0", "torchvision": "0.26.0", "torchaudio": "2.11.0"}


def _lock_extras() -> list[str]:
    line = next(x for x in (REPO / "Makefile").read_text().splitlines()
                if x.startswith("LOCK_EXTRAS"))
    return re.findall(r"--extra (\S+)", line)


def _requirements(path: Path) -> list[Requirement]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            reqs.append(Requirement(line))
    return reqs


def _applies(req: Requirement, extras: tuple[str, ...] = ("",)) -> bool:
    env = default_environment()
    return req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in extras)


def _locked() -> dict[str, str]:
    """name -> pinned version, for this interpreter and platform."""
    pins = {}
    for req in _requirements(REPO / "requirements" / "lock.txt"):
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"lock entry not pinned: {req}"
        if _applies(req):
            pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def _declared() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in _lock_extras():
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in reqs if _applies(r, tuple(_lock_extras()) + ("",))]


def test_the_lock_is_made_by_make_lock_from_the_extras_it_installs():
    header = (REPO / "requirements" / "lock.txt").read_text().splitlines()[:2]
    assert header[1].strip() == "#    make lock"
    install = (REPO / "Makefile").read_text()
    extras = ",".join(_lock_extras())
    assert f'-c $(LOCK) -e ".[{extras}]"' in install  # make test installs what was locked
    assert "-c $(LOCK) -e ." in install  # and so does make demo


def test_every_declared_dependency_is_locked_within_its_range():
    locked = _locked()
    problems = []
    for req in _declared():
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req}: not in the lock")
        elif not req.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{req}: locked at {locked[name]}")
    assert not problems, f"pyproject.toml and requirements/lock.txt disagree (run make lock): " \
                         f"{problems}"


def test_compiled_trio_is_pinned_exactly():
    declared = {canonicalize_name(r.name): str(r.specifier)
                for r in map(Requirement, PYPROJECT["project"]["dependencies"])}
    locked = _locked()
    for name, version in COMPILED_TRIO.items():
        assert declared[name] == f"=={version}", name
        assert locked[name] == version, name


def test_no_deps_pins_match_the_bench_extra():
    no_deps = {canonicalize_name(r.name): str(r.specifier)
               for r in _requirements(REPO / "requirements" / "no-deps.txt")}
    bench = {canonicalize_name(r.name): str(r.specifier)
             for r in map(Requirement, PYPROJECT["project"]["optional-dependencies"]["bench"])}
    assert no_deps and no_deps == bench


def test_the_environment_is_the_lock():
    """Every locked package is installed at its locked version (local tags such as +cu130
    aside), ESPnet included: this suite ran in an environment made from the lock."""
    wanted = {**_locked(), **{canonicalize_name(r.name): str(r.specifier)[2:]
                               for r in _requirements(REPO / "requirements" / "no-deps.txt")}}
    wrong = {}
    for name, version in wanted.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or not SpecifierSet(f"=={version}").contains(installed):
            wrong[name] = (version, installed)
    assert not wrong, f"installed differs from the lock (locked, installed): {wrong}"
