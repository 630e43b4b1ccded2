"""The deploy images' dependency sets (deploy/*.Dockerfile), checked without Docker.

Docker cannot build here, so each image is checked through its dependency set
(deploy/image_deps.py): the transitive closure of `pip install .[EXTRA]` computed from
pyproject.toml and the installed distributions' metadata, and the image's entry-point imports
run in a subprocess in which every installed distribution outside that closure is unimportable.
The real fresh-virtualenv install with sizes is `python -m deploy.image_deps --fresh` (bench).
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from deploy import image_deps as D

ROOT = Path(__file__).resolve().parents[1]
IMAGES = {i.name: i for i in D.IMAGES}
#: the ingester's import (the Lambda cold start's stand-in) should take <= 3 s on a quiet 2-core
#: machine (python -m deploy.image_deps / the bench report it); the test only guards against a
#: regression by an order of magnitude, since a loaded machine doubles it
IMPORT_CEILING_S = 15.0


@pytest.fixture(scope="module")
def closures():
    return {name: D.closure([img.extra]) for name, img in IMAGES.items()}


def test_each_dockerfile_installs_its_extra():
    for img in D.IMAGES:
        assert D.dockerfile_extra(img.dockerfile) == img.extra, img.dockerfile


def test_dockerfiles_copy_every_package_of_the_project():
    """COPY lines == pyproject's [tool.setuptools.packages.find] include list (else the image's
    `pip install` silently leaves a package out)."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    for img in D.IMAGES:
        copied = set(re.findall(r"^COPY (\w+) /tmp/src/\1$", (ROOT / img.dockerfile).read_text(), re.M))
        assert copied == packages, (img.dockerfile, sorted(packages ^ copied))


def test_ingester_set_has_no_torch_or_other_heavy_dependency(closures):
    ingest = closures["ingester"]
    assert ingest.missing == []                      # the closure is complete in this venv
    for heavy in D.HEAVY:
        assert heavy not in ingest, f"{heavy} is in the ingester's dependency set"
    assert not [n for n in ingest.versions if n.startswith("nvidia-")]
    assert "aws-lambda-powertools" in ingest and "feast" in ingest and "boto3" in ingest
    # positive control: the same computation does find torch where it belongs
    assert "torch" in closures["inference"] and "torch" in D.closure(["train"])
    assert "torch" not in closures["jobs"]


def test_the_detector_sees_torch_through_a_transitive_requirement(monkeypatch):
    """Negative check: torch reached through another extra (self-reference) is found."""
    real = D._pyproject()
    fake = {**real, "project": {**real["project"], "optional-dependencies": {
        **real["project"]["optional-dependencies"], "ingest": ["marketplace-health[serve]"]}}}
    monkeypatch.setattr(D, "_pyproject", lambda: fake)
    assert "torch" in D.closure(["ingest"])


def test_test_extra_installs_every_other_extra():
    """`make install` installs .[test]: the suite keeps every dependency of every image."""
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    everything = D.closure([e for e in optional if e != "test"])
    test = D.closure(["test"])
    assert set(everything.versions) <= set(test.versions)
    base = D.closure([])
    for heavy in D.HEAVY + ("moto",):
        assert heavy not in base, f"{heavy} is still a base dependency"


def test_ingester_imports_without_torch(closures):
    blocked = D.blocked_modules(closures["ingester"])
    assert "torch" in blocked and "sklearn" in blocked and "great_expectations" in blocked
    r = D.import_check(IMAGES["ingester"].probe, blocked)
    assert r.ok, r.output[-3000:]
    assert r.heavy_loaded == []
    print(f"ingester import (handler modules + Feast repo config, no torch): {r.seconds:.2f} s")
    assert r.seconds < IMPORT_CEILING_S


def test_the_blocker_really_blocks():
    """Negative check: a probe that needs torch fails in the ingester's set."""
    r = D.import_check("import torch", D.blocked_modules(D.closure(["ingest"])))
    assert not r.ok and "not in this image's dependency set" in r.output


def test_jobs_image_imports(closures):
    r = D.import_check(IMAGES["jobs"].probe, D.blocked_modules(closures["jobs"]))
    assert r.ok, r.output[-3000:]
    assert r.heavy_loaded == []


def test_inference_image_imports_its_server(closures):
    r = D.import_check(IMAGES["inference"].probe, D.blocked_modules(closures["inference"]))
    assert r.ok, r.output[-3000:]
    assert r.heavy_loaded == ["torch"]


def test_inference_entrypoint_runs_mhp_serve_on_8080():
    text = (ROOT / "deploy" / "inference-entrypoint.sh").read_text()
    assert 'exec mhp serve --model "${SM_MODEL_DIR:-/opt/ml/model}" --host 0.0.0.0 --port "${SAGEMAKER_BIND_TO_PORT:-8080}"' in text
    assert 'CMD ["serve"]' in (ROOT / "deploy" / "inference.Dockerfile").read_text()


def test_mhp_serve_runs_in_the_inference_image(closures):
    """The image's entry point is `mhp serve`: the CLI must start without the other extras'
    packages (DuckDB, Great Expectations, ...) and name what it left out."""
    probe = ("import contextlib, io, mhp.cli\n"
             "for argv in (['serve', '--help'], ['--help']):\n"
             "    out = io.StringIO()\n"
             "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
             "        mhp.cli.main(argv)\n"
             "    print(out.getvalue())\n")
    r = D.import_check(probe, D.blocked_modules(closures["inference"]))
    assert r.ok, r.output[-3000:]
    assert "--model" in r.output and "--port" in r.output            # mhp serve --help
    assert "not installed here:" in r.output and "dataset (needs 'duckdb')" in r.output


def test_mhp_cli_still_fails_loudly_on_a_broken_project_import(monkeypatch):
    """Only a missing third-party package is tolerated, never a missing project module."""
    import mhp.cli

    monkeypatch.setattr(mhp.cli, "COMMAND_MODULES", ["mhp.commands.serve", "mhp.commands.no_such_command"])
    with pytest.raises(ModuleNotFoundError):
        mhp.cli.build_parser()
