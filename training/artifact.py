"""The model artifact: what training writes to SM_MODEL_DIR, and ``model.tar.gz``.

Layout (the SageMaker PyTorch serving layout; the archive holds the directory's
contents, not the directory):

    model.pt              state_dict of the MultiTaskNet or EnsembleNet (torch.save, weights only)
    preprocess.json       fitted preprocessing (training/preprocess.py), JSON, no pickle
    model_config.json     architecture, feature schema, model version, feature service,
                          head -> label names, training metadata, post-hoc calibration
                          (head -> isotonic breakpoints, training/calibration.py)
    code/inference.py     model_fn / input_fn / predict_fn / output_fn
    code/preprocess.py    copies of our modules, so inference runs without our package
    code/model.py
    code/requirements.txt empty on purpose: the PyTorch container has torch and numpy

``pack_model_dir`` writes a byte-reproducible tar.gz (sorted entries, zeroed mtimes and
owners, normalised modes, gzip header without name/mtime). ``load_artifact`` extracts
one and imports ``code/inference.py`` from the extracted directory as a SageMaker
endpoint would.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import math
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Mapping

ARTIFACT_FORMAT_VERSION = 1
CODE_FILES = ("inference.py", "preprocess.py", "model.py")
_HERE = Path(__file__).resolve().parent


def save_model_dir(model_dir, *, net, preprocessor, train_config: Mapping[str, Any], train_summary: Mapping[str, Any],
                   model_version: str | None = None, metadata: Mapping[str, Any] | None = None,
                   calibration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the artifact layout into ``model_dir``; returns the model_config written.

    ``model_version`` defaults to ``<feature_service>-<first 12 hex of sha256(model.pt)>``,
    so the same weights always carry the same version and different weights never share one;
    with a ``calibration`` (head -> stored map), the hash covers model.pt's bytes followed by
    the calibration's canonical JSON, since the calibration changes what the model serves.
    """
    import torch

    from training.model import HEAD_LABELS  # lazy: imports torch, like the line above

    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    weights = root / "model.pt"
    torch.save(net.state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    calibration = {h: dict(m) for h, m in (calibration or {}).items() if m}
    served = digest if not calibration else hashlib.sha256(
        weights.read_bytes() + json.dumps(calibration, sort_keys=True).encode()).hexdigest()
    service = preprocessor.schema.feature_service
    version = model_version or f"{service}-{served[:12]}"
    preprocessor.save(root / "preprocess.json")
    config = {
        "format_version": ARTIFACT_FORMAT_VERSION,
        "model_version": version,
        "feature_service": service,
        "weights_file": "model.pt",
        "weights_sha256": digest,
        "architecture": net.config.to_dict(),
        "feature_schema": preprocessor.schema.to_dict(),
        "input_names": preprocessor.output_names,
        "labels": {h: HEAD_LABELS[h] for h in net.config.heads},
        "outputs": {h: ("probability" if h != "customer_health_score" else "score_0_100") for h in net.config.heads},
        "calibration": calibration,
        "training": {"hyperparameters": dict(train_config), **dict(train_summary), **dict(metadata or {}),
                     "torch_version": torch.__version__},
    }
    (root / "model_config.json").write_text(json.dumps(config, indent=1, sort_keys=True, default=_json_default) + "\n")
    code = root / "code"
    code.mkdir(exist_ok=True)
    for name in CODE_FILES:
        shutil.copyfile(_HERE / name, code / name)
    (code / "requirements.txt").write_text(
        "# torch and numpy come with the SageMaker PyTorch inference container; nothing else is needed\n")
    return config


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def deterministic_tar_gz(root, out_path, *, arc_prefix: str = "", exclude=("__pycache__", ".DS_Store")) -> Path:
    """Tar+gzip the contents of ``root`` reproducibly (same files -> same bytes)."""
    root = Path(root)
    out = Path(out_path)
    entries = sorted(p for p in root.rglob("*")
                     if not any(part in exclude or part.endswith(".pyc") for part in p.relative_to(root).parts)
                     and p.resolve() != out.resolve())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in entries:
            if path.is_symlink():
                raise ValueError(f"refusing to pack symlink {path}")
            arcname = arc_prefix + path.relative_to(root).as_posix()
            info = _normalised(tar.gettarinfo(str(path), arcname=arcname))
            if path.is_dir():
                tar.addfile(info)
            else:
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue())
    return out


def pack_model_dir(model_dir, tar_path=None) -> Path:
    """``model_dir`` -> ``model.tar.gz`` (default: beside model_dir) with the layout above."""
    model_dir = Path(model_dir)
    missing = [n for n in ("model.pt", "preprocess.json", "model_config.json", "code/inference.py")
               if not (model_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{model_dir} is not a model directory: missing {missing}")
    return deterministic_tar_gz(model_dir, tar_path or model_dir.parent / "model.tar.gz")


def _safe_extract(tar_path: Path, dest: Path) -> None:
    with tarfile.open(tar_path, "r:gz") as tar:
        for m in tar.getmembers():
            target = (dest / m.name).resolve()
            if not (m.isfile() or m.isdir()) or not str(target).startswith(str(dest.resolve())):
                raise ValueError(f"unsafe entry in {tar_path}: {m.name!r}")
        tar.extractall(dest, filter="data")


class LoadedArtifact:
    """An extracted artifact with its handler imported, used like a SageMaker endpoint."""

    def __init__(self, model_dir: Path, handler: Any, tempdir: tempfile.TemporaryDirectory | None = None):
        self.model_dir = model_dir
        self.handler = handler
        self._tempdir = tempdir  # kept alive as long as this object
        self.model = handler.model_fn(str(model_dir))
        self.config = json.loads((model_dir / "model_config.json").read_text())

    @property
    def model_version(self) -> str:
        return self.config["model_version"]

    def invoke(self, body: bytes | str, content_type: str = "application/json",
               accept: str = "application/json") -> str:
        """The serving container's request path: input_fn -> predict_fn -> output_fn."""
        data = self.handler.input_fn(body, content_type)
        prediction = self.handler.predict_fn(data, self.model)
        return self.handler.output_fn(prediction, accept)

    def predict_records(self, rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Score Python rows through the JSON contract; a float NaN (pandas' missing value) is sent as null,
        as the scoring client does (the endpoint refuses NaN literals)."""
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
        return json.loads(self.invoke(json.dumps({"instances": clean}, default=_json_default)))["predictions"]


def import_handler(model_dir) -> Any:
    """Import ``<model_dir>/code/inference.py`` by path, as the serving container does."""
    path = Path(model_dir) / "code" / "inference.py"
    name = f"_mhp_endpoint_handler_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_artifact(path, extract_dir=None) -> LoadedArtifact:
    """Load ``model.tar.gz`` (extracted into ``extract_dir`` or a temp dir) or an extracted model dir."""
    path = Path(path)
    tempdir = None
    if path.is_dir():
        model_dir = path
    else:
        if extract_dir is None:
            tempdir = tempfile.TemporaryDirectory(prefix="mhp-model-")
            model_dir = Path(tempdir.name)
        else:
            model_dir = Path(extract_dir)
            model_dir.mkdir(parents=True, exist_ok=True)
        _safe_extract(path, model_dir)
    return LoadedArtifact(model_dir, import_handler(model_dir), tempdir)
