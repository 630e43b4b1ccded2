"""Each deploy image's dependency set, without Docker.

Docker cannot build here, so the images are checked through their dependency sets:

* :func:`closure` -- the transitive closure of ``pip install .[EXTRA]``: the project's own
  requirements read from ``pyproject.toml`` (self-references such as
  ``marketplace-health[ingest]`` expanded), then every requirement's requirements from the
  installed distributions' metadata (``importlib.metadata``), markers evaluated with the extras
  asked for. Versions are whatever is installed in this venv.
* :func:`import_check` -- runs an import in a subprocess of this interpreter in which every
  top-level module of an installed distribution **outside** the closure is unimportable (a
  ``sitecustomize`` meta-path blocker on ``PYTHONPATH``), and times it. That is what the image
  would import, give or take the interpreter's own start-up.
* :func:`fresh_install` -- the real thing for the benchmark / ``make image-deps``: a new virtualenv
  (no system site-packages), ``pip install ROOT[EXTRA]`` (downloads from the package index),
  its installed size and the handler's import time there.

``python -m deploy.image_deps`` prints the closure sizes and import times; ``--fresh`` also
installs each set into a fresh virtualenv (needs the package index; minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "marketplace-health"
#: never blocked: the interpreter's packaging tools exist in every base image
ALWAYS_ALLOWED = {"pip", "setuptools", "wheel"}
#: distributions the issue calls heavy; none may be in the ingester's set
HEAVY = ("torch", "scikit-learn", "matplotlib", "great-expectations")


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    extra: str
    #: what the image's entry point imports at cold start
    probe: str


# The probes import the entry points' modules (mhp.lambdas defers them to the builders) and open
# the Feast store the deployed handler builds (no AWS call: FeatureStore construction is local).
_OPEN_STORE = ("import mhp.lambdas as L; L.open_feature_store({'MHP_DATA_URI': 's3://mhp-probe/data', "
               "'MHP_STATE_DIR': __import__('tempfile').mkdtemp(), "
               "'MHP_FEAST_TABLE_TEMPLATE': 'mhp-probe.{project}.{table_name}'})")
IMAGES = (
    Image("ingester", "deploy/ingester.Dockerfile", "ingest",
          "import mhp.lambdas, ingestion.handler, ingestion.push, ingestion.dynamodb_state_store, "
          "ingestion.dead_letters, serving.hook, serving.runtime, serving.dynamodb_state; " + _OPEN_STORE),
    Image("jobs", "deploy/jobs.Dockerfile", "jobs",
          "import mhp.lambdas, ingestion.ticks, ingestion.dynamodb_state_store, serving.batch, serving.runtime, "
          "serving.dynamodb_state; " + _OPEN_STORE),
    Image("inference", "deploy/inference.Dockerfile", "serve",
          "import serving.server, training.artifact, torch"),
)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def project_requirements(extras: tuple[str, ...] | list[str]) -> list[Requirement]:
    """The project's requirements for ``.[extras]`` (self-references expanded)."""
    project = _pyproject()["project"]
    optional = project.get("optional-dependencies", {})
    out: list[Requirement] = [Requirement(r) for r in project.get("dependencies", [])]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise KeyError(f"pyproject.toml has no extra {extra!r}; expected one of {sorted(optional)}")
        seen.add(extra)
        for r in map(Requirement, optional[extra]):
            if canonicalize_name(r.name) == PROJECT:
                todo += sorted(r.extras)
            else:
                out.append(r)
    return out


def _marker_ok(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


@dataclass
class Closure:
    versions: dict[str, str]          # canonical name -> installed version
    missing: list[str]                # required but not installed here

    def __contains__(self, name: str) -> bool:
        return canonicalize_name(name) in self.versions

    def size_bytes(self) -> int:
        """Installed size of the set in this venv (files listed in each RECORD)."""
        total = 0
        for name in self.versions:
            for f in metadata.distribution(name).files or ():
                try:
                    total += os.path.getsize(f.locate())
                except OSError:
                    pass
        return total


def closure(extras: tuple[str, ...] | list[str]) -> Closure:
    """Transitive closure of ``pip install .[extras]`` over the installed distributions."""
    versions: dict[str, str] = {}
    missing: list[str] = []
    wanted: dict[str, set[str]] = {}
    todo = [(r, set()) for r in project_requirements(extras)]
    while todo:
        req, parent_extras = todo.pop()
        if not _marker_ok(req, parent_extras):
            continue
        name = canonicalize_name(req.name)
        extras_now = set(req.extras)
        if name in wanted and extras_now <= wanted[name]:
            continue
        wanted.setdefault(name, set()).update(extras_now)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        versions[name] = dist.version
        for sub in dist.requires or ():
            todo.append((Requirement(sub), wanted[name]))
    return Closure(versions, sorted(set(missing)))


def blocked_modules(allowed: Closure) -> list[str]:
    """Top-level modules of installed distributions outside ``allowed`` (and outside the project)."""
    ok = set(allowed.versions) | {canonicalize_name(n) for n in ALWAYS_ALLOWED} | {PROJECT}
    out = []
    for module, dists in metadata.packages_distributions().items():
        if module.startswith("__") or not module.isidentifier():
            continue
        if not any(canonicalize_name(d) in ok for d in dists):
            out.append(module)
    return sorted(out)


_BLOCKER = '''"""Written by deploy/image_deps.py: make modules outside the image's dependency set unimportable."""
import sys

_BLOCKED = frozenset({blocked!r})


class _ImageDependencyBlocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in this image's dependency set)", name=name)
        return None


sys.meta_path.insert(0, _ImageDependencyBlocker())
'''


def write_blocker(directory: Path, blocked: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sitecustomize.py"
    path.write_text(_BLOCKER.format(blocked=sorted(blocked)))
    return path


_TIMED = '''
import sys, time, json
t0 = time.perf_counter()
{probe}
t1 = time.perf_counter()
heavy = sorted(m for m in ("torch", "sklearn", "matplotlib", "great_expectations") if m in sys.modules)
print(json.dumps({{"seconds": t1 - t0, "heavy_loaded": heavy}}))
'''


@dataclass
class ImportResult:
    ok: bool
    seconds: float | None
    heavy_loaded: list[str]
    output: str


def import_check(probe: str, blocked: list[str], python: str = sys.executable, env: dict | None = None,
                 timeout: float = 180) -> ImportResult:
    """Run ``probe`` in a fresh interpreter with ``blocked`` modules unimportable; time it."""
    with tempfile.TemporaryDirectory(prefix="mhp-image-") as tmp:
        write_blocker(Path(tmp), blocked)
        run_env = {**os.environ, **(env or {})}
        run_env["PYTHONPATH"] = os.pathsep.join([tmp, str(ROOT)])
        run_env.setdefault("FEAST_USAGE", "False")
        run_env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        proc = subprocess.run([python, "-c", _TIMED.format(probe=probe)], capture_output=True, text=True,
                              cwd=tmp, env=run_env, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        return ImportResult(False, None, [], out)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return ImportResult(True, res["seconds"], res["heavy_loaded"], out)


def dockerfile_extra(dockerfile: str) -> str:
    """The extra a Dockerfile installs (``pip install ... .[EXTRA]``)."""
    text = (ROOT / dockerfile).read_text()
    m = re.search(r"pip install[^\n]*?\[([a-z0-9_,-]+)\]", text)
    if not m:
        raise ValueError(f"{dockerfile}: no `pip install ...[extra]` line")
    return m.group(1)


def pinned_constraints(path: Path) -> Path:
    """This venv's versions as a pip constraints file (the versions the suite is tested with).

    Without it pip backtracks for many minutes through boto3/botocore releases (aiobotocore pins
    botocore narrowly) downloading each one's metadata; with it the fresh install resolves at
    once and measures the same versions the suite runs."""
    lines = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name != PROJECT:
            lines.append(f"{name}=={dist.version}")
    path.write_text("\n".join(sorted(set(lines))) + "\n")
    return path


def fresh_install(image: Image, workdir: Path, pip_args: tuple[str, ...] | None = None) -> dict:
    """New virtualenv, ``pip install ROOT[extra]`` (pinned to this venv's versions unless
    ``pip_args`` is given), installed size and the probe's import time."""
    if pip_args is None:
        pip_args = ("-c", str(pinned_constraints(workdir / "constraints.txt")))
    venv = workdir / f"venv-{image.name}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    base = _dir_size(site)
    t0 = time.perf_counter()
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pip_args,
                    f"{ROOT}[{image.extra}]"], check=True)
    install_s = time.perf_counter() - t0
    size = _dir_size(site) - base
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], check=True, capture_output=True, text=True).stdout
    names = {canonicalize_name(line.split("==")[0].split(" @ ")[0]) for line in freeze.splitlines() if line}
    times = []
    for _ in range(3):
        # from a neutral folder, so the installed package (not the source tree) is imported
        r = subprocess.run([str(py), "-c", _TIMED.format(probe=image.probe)], capture_output=True, text=True,
                           cwd=workdir, env={**os.environ, "FEAST_USAGE": "False", "AWS_DEFAULT_REGION": "us-east-1",
                                             "PYTHONPATH": ""}, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"{image.name}: probe failed in the fresh venv:\n{r.stdout}{r.stderr}")
        times.append(json.loads(r.stdout.strip().splitlines()[-1])["seconds"])
    return {"image": image.name, "extra": image.extra, "installed_mb": size / 1e6, "install_s": install_s,
            "import_s_min": min(times), "import_s_median": sorted(times)[1], "has_torch": "torch" in names,
            "distributions": len(names)}


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.image_deps", description=__doc__.split("\n\n")[0])
    p.add_argument("--fresh", action="store_true", help="also pip install each set into a fresh virtualenv")
    p.add_argument("--images", default=",".join(i.name for i in IMAGES))
    args = p.parse_args(argv)
    chosen = [i for i in IMAGES if i.name in args.images.split(",")]
    for image in chosen:
        c = closure([image.extra])
        r = import_check(image.probe, blocked_modules(c))
        print(f"{image.name:10s} .[{image.extra}]  {len(c.versions):3d} distributions, {c.size_bytes() / 1e6:7.0f} MB "
              f"in this venv, torch {'IN' if 'torch' in c else 'not'} in the set, "
              f"import {'%.2f s' % r.seconds if r.ok else 'FAILED'}")
        if not r.ok:
            print(r.output[-2000:])
    if args.fresh:
        with tempfile.TemporaryDirectory(prefix="mhp-image-deps-") as tmp:
            for image in chosen:
                print(json.dumps(fresh_install(image, Path(tmp))), flush=True)
                shutil.rmtree(Path(tmp) / f"venv-{image.name}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
