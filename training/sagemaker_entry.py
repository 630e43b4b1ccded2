"""SageMaker training entry point: ``python -m training.sagemaker_entry [--epochs 20 ...]``.

Runs unchanged on a SageMaker training instance (PyTorch framework container, script
mode) and on this machine. Contract:

* inputs:  ``SM_CHANNEL_TRAIN`` (default /opt/ml/input/data/train): the dataset
           directory, Parquet file(s) + ``feature_schema.json``.
* outputs: ``SM_MODEL_DIR`` (default /opt/ml/model): the artifact layout of
           training/artifact.py, which SageMaker tars into model.tar.gz;
           ``SM_OUTPUT_DATA_DIR`` (default /opt/ml/output/data): report.md, plots,
           metrics.json, history.json. On failure the reason goes to
           ``$SM_OUTPUT_DIR/failure`` (default /opt/ml/output/failure), which SageMaker
           shows as the job's FailureReason.
* hyperparameters, later sources override earlier ones:
  1. ``$SM_INPUT_CONFIG_DIR/hyperparameters.json`` (default /opt/ml/input/config):
     every value a string, possibly JSON-encoded (``"20"``, ``"\\"auto\\""``);
  2. ``SM_HPS``: a JSON object;
  3. command-line ``--name value`` / ``--name=value`` pairs, as the toolkit passes them.
  Names may use dashes or underscores. ``sagemaker_*`` keys (framework settings) are
  ignored; any other unknown name is an error naming it.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

if __package__ in (None, ""):
    # run as a script (SageMaker's sagemaker_program=training/sagemaker_entry.py): make the
    # package importable from the source directory it was unpacked into
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.preprocess import FeatureSchema  # noqa: E402


class HyperparameterError(ValueError):
    """A hyperparameter is unknown or has a bad value; the message names it."""


class DatasetError(ValueError):
    """The training channel does not hold a dataset in the expected contract."""


class QualityGateError(DatasetError):
    """The dataset failed the training-set quality gate; the message names every failing check."""


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _to_int_tuple(v: Any) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        items = list(v)
    else:
        items = [p for p in str(v).replace(" ", "").split(",") if p]
    out = tuple(int(x) for x in items)
    if not out or any(h <= 0 for h in out):
        raise ValueError("expected comma-separated positive layer widths, e.g. 128,64")
    return out


def _to_task_weights(v: Any) -> dict[str, float]:
    from training.model import HEADS  # lazy: imports torch or the quality gate only when training runs, not to parse arguments

    if isinstance(v, str):
        s = v.strip()
        if s.startswith("{"):
            v = json.loads(s)
        else:
            v = dict(p.split("=", 1) for p in s.split(",") if p)
    if not isinstance(v, Mapping):
        raise ValueError("expected head=weight pairs, e.g. churn_risk_30d=1,ib_call_risk_14d=1,customer_health_score=1")
    unknown = sorted(set(v) - set(HEADS))
    if unknown:
        raise ValueError(f"unknown heads {unknown}; expected some of {list(HEADS)}")
    weights = {h: 1.0 for h in HEADS}
    weights.update({k: float(x) for k, x in v.items()})
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be >= 0")
    return weights


def _to_pos_weight(v: Any) -> str | float:
    if isinstance(v, str) and v.strip().lower() in ("auto", "none"):
        return v.strip().lower()
    w = float(v)
    if not w > 0:
        raise ValueError("expected 'auto', 'none' or a positive number")
    return w


def _positive(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        x = conv(v)
        if not x > 0:
            raise ValueError("must be > 0")
        return x
    return check


def _non_negative(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        x = conv(v)
        if x < 0:
            raise ValueError("must be >= 0")
        return x
    return check


def _dropout(v: Any) -> float:
    x = float(v)
    if not 0 <= x < 1:
        raise ValueError("must be in [0, 1)")
    return x


#: name -> (converter, default, meaning)
HYPERPARAMETERS: dict[str, tuple[Callable[[Any], Any], Any, str]] = {
    "epochs": (_positive(int), 40, "maximum training epochs"),
    "batch_size": (_positive(int), 256, "minibatch size"),
    "learning_rate": (_positive(float), 1e-3, "AdamW learning rate"),
    "weight_decay": (_non_negative(float), 1e-4, "AdamW weight decay"),
    "hidden": (_to_int_tuple, (128, 64), "trunk layer widths, comma-separated"),
    "dropout": (_dropout, 0.1, "dropout after each trunk layer"),
    "patience": (_positive(int), 5, "early stopping: epochs without val-loss improvement"),
    "min_delta": (_non_negative(float), 1e-4, "early stopping: smallest improvement that counts"),
    "seed": (_non_negative(int), 0, "seed for init, dropout and shuffling"),
    "task_weights": (_to_task_weights, None, "head=weight pairs; default 1 each"),
    "pos_weight": (_to_pos_weight, "auto", "'auto' (neg/pos capped), 'none' or a number"),
    "max_pos_weight": (_positive(float), 3.0, "cap for the automatic pos_weight"),
    "ensemble": (_positive(int), 5, "nets trained with different seeds, predictions averaged"),
    "check_rows": (_positive(int), 8192, "a validation check (early stopping) every this many training rows"),
    "model_version": (str, "", "version string; default <feature_service>-<sha256(model.pt)[:12]>"),
    "baselines": (_to_bool, True, "also fit single-task baselines for the report"),
    "single_task_nets": (_to_bool, True, "include single-task nets among the baselines"),
    "quality_gate": (_to_bool, True, "run the training-set quality gate (validation suite) before fitting"),
    "calibrate": (_to_bool, True, "post-hoc isotonic calibration per binary head, kept where it lowers the "
                                  "cross-fitted validation Brier (training/calibration.py)"),
}
PATH_OPTIONS = {"train": "SM_CHANNEL_TRAIN", "model_dir": "SM_MODEL_DIR", "output_data_dir": "SM_OUTPUT_DATA_DIR"}


def _decode_string(v: Any) -> Any:
    """hyperparameters.json values are strings, JSON-encoded by the SageMaker SDK; plain strings pass."""
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def _parse_cli(argv: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--"):
            raise HyperparameterError(f"unexpected argument {tok!r}; expected --name value pairs")
        if "=" in tok:
            key, value = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise HyperparameterError(f"argument {tok} has no value")
            key, value = tok[2:], args[i + 1]
            i += 2
        out[key] = value
    return out


@dataclass
class SageMakerEnv:
    train_dir: Path
    model_dir: Path
    output_data_dir: Path
    hyperparameters: dict[str, Any]


def resolve_environment(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> SageMakerEnv:
    """Paths and hyperparameters from env vars, hyperparameters.json and the command line."""
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else argv
    raw: dict[str, tuple[Any, str]] = {}
    config_dir = Path(environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    hp_file = config_dir / "hyperparameters.json"
    if hp_file.is_file():
        try:
            data = json.loads(hp_file.read_text())
        except json.JSONDecodeError as exc:
            raise HyperparameterError(f"{hp_file}: not valid JSON: {exc}") from None
        raw.update({k: (_decode_string(v), str(hp_file)) for k, v in data.items()})
    if environ.get("SM_HPS"):
        try:
            data = json.loads(environ["SM_HPS"])
        except json.JSONDecodeError as exc:
            raise HyperparameterError(f"SM_HPS: not valid JSON: {exc}") from None
        raw.update({k: (v, "SM_HPS") for k, v in data.items()})
    raw.update({k: (_decode_string(v), "command line") for k, v in _parse_cli(argv).items()})

    paths = {k: Path(environ.get(env, default)) for (k, env), default in zip(
        PATH_OPTIONS.items(), ("/opt/ml/input/data/train", "/opt/ml/model", "/opt/ml/output/data"))}
    hps = {name: default for name, (_, default, _) in HYPERPARAMETERS.items()}
    unknown = []
    for key, (value, source) in raw.items():
        name = key.replace("-", "_")
        if name.startswith("sagemaker_"):
            continue  # framework settings (sagemaker_program, sagemaker_region, ...)
        if name in PATH_OPTIONS:
            paths[name] = Path(str(value))
            continue
        if name not in HYPERPARAMETERS:
            unknown.append(f"{key} (from {source})")
            continue
        conv = HYPERPARAMETERS[name][0]
        try:
            hps[name] = conv(value)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise HyperparameterError(f"hyperparameter {key!r} (from {source}) = {value!r}: {exc}") from None
    if unknown:
        raise HyperparameterError(f"unknown hyperparameters: {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted(HYPERPARAMETERS))}")
    if hps["task_weights"] is None:
        hps["task_weights"] = _to_task_weights({})
    return SageMakerEnv(paths["train"], paths["model_dir"], paths["output_data_dir"], hps)


# --- dataset -----------------------------------------------------------------------------------

REQUIRED_COLUMNS = ("split", "churn_30d", "ib_calls_14d", "health_score")
SPLITS = ("train", "validation", "test")


def load_dataset(train_dir) -> tuple[Any, FeatureSchema]:
    """Read every Parquet file under the channel directory and its ``feature_schema.json``."""
    import pandas as pd

    root = Path(train_dir)
    if not root.is_dir():
        raise DatasetError(f"training channel {root} does not exist (SM_CHANNEL_TRAIN)")
    schemas = sorted(root.rglob("feature_schema.json"))
    if len(schemas) != 1:
        raise DatasetError(f"expected exactly one feature_schema.json under {root}, found {len(schemas)}")
    schema = FeatureSchema.load(schemas[0])
    files = sorted(p for p in root.rglob("*.parquet") if not any(s.startswith((".", "_")) for s in p.parts[-1:]))
    if not files:
        raise DatasetError(f"no .parquet files under {root}")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"dataset is missing columns: {missing}")
    missing_features = [n for n in schema.names if n not in frame.columns]
    if missing_features:
        raise DatasetError(f"dataset lacks features declared in feature_schema.json: {missing_features}")
    bad_splits = sorted(set(frame["split"].dropna().unique()) - set(SPLITS))
    if bad_splits:
        raise DatasetError(f"unknown split values {bad_splits}; expected {list(SPLITS)}")
    empty = [s for s in SPLITS if not (frame["split"] == s).any()]
    if empty:
        raise DatasetError(f"dataset has no rows in split(s) {empty}")
    return frame, schema


def quality_gate(frame, schema: FeatureSchema, report_path) -> str:
    """The training-set suite (training/quality.py); raises QualityGateError naming the failing checks."""
    try:
        from training.quality import check_training_set  # lazy: imports torch or the quality gate only when training runs, not to parse arguments
        from validation.gate import DataQualityError  # lazy: imports torch or the quality gate only when training runs, not to parse arguments
    except ImportError as exc:
        raise DatasetError(f"quality_gate: the validation package is not importable ({exc}); ship it with the "
                           "source dir or set the hyperparameter quality_gate=false") from None
    try:
        return check_training_set(frame, schema.to_dict(), report_path=report_path).summary()
    except DataQualityError as exc:
        raise QualityGateError(f"training stopped before fitting: {exc}") from None


# --- the job -----------------------------------------------------------------------------------

@dataclass
class TrainingOutcome:
    model_dir: Path
    output_data_dir: Path
    model_config: dict[str, Any]
    table: str
    metrics: dict[str, Any]


def run_training(train_dir, model_dir, output_data_dir, hyperparameters: Mapping[str, Any] | None = None,
                 log: Callable[[str], None] = print) -> TrainingOutcome:
    """Fit preprocessing (train split only) and the net, evaluate on test, write the artifact."""
    from training.artifact import save_model_dir  # lazy: imports torch or the quality gate only when training runs, not to parse arguments
    from training.evaluate import (  # lazy: imports torch or the quality gate only when training runs, not to parse arguments
        evaluate,
        fit_baselines,
        format_table,
        model_card_facts,
        write_report,
    )
    from training.model import (  # lazy: imports torch or the quality gate only when training runs, not to parse arguments
        BINARY_HEADS,
        HEAD_LABELS,
        TrainConfig,
        predict,
        train_multitask,
    )
    from training.preprocess import Preprocessor  # lazy: imports torch or the quality gate only when training runs, not to parse arguments

    hps = {name: default for name, (_, default, _) in HYPERPARAMETERS.items()}
    hps.update(hyperparameters or {})
    if hps["task_weights"] is None:
        hps["task_weights"] = _to_task_weights({})
    started = time.perf_counter()
    frame, schema = load_dataset(train_dir)
    if hps.get("quality_gate", True):
        gate_summary = quality_gate(frame, schema, Path(output_data_dir) / "quality_report.html")
        log(gate_summary)
    parts = {s: frame[frame["split"] == s].reset_index(drop=True) for s in SPLITS}
    log(f"dataset: {len(frame)} rows ({', '.join(f'{s}={len(p)}' for s, p in parts.items())}), "
        f"{len(schema.features)} features from {schema.feature_service}")
    pre = Preprocessor.fit_train_split(frame, schema)
    x = {s: pre.transform(p) for s, p in parts.items()}
    y = {s: {h: p[c].to_numpy(dtype=float) for h, c in HEAD_LABELS.items()} for s, p in parts.items()}
    config = TrainConfig(epochs=hps["epochs"], batch_size=hps["batch_size"], learning_rate=hps["learning_rate"],
                         weight_decay=hps["weight_decay"], hidden=tuple(hps["hidden"]), dropout=hps["dropout"],
                         patience=hps["patience"], min_delta=hps["min_delta"], seed=hps["seed"],
                         task_weights=dict(hps["task_weights"]), pos_weight=hps["pos_weight"],
                         max_pos_weight=hps["max_pos_weight"], ensemble=hps["ensemble"],
                         check_rows=hps["check_rows"])
    result = train_multitask(x["train"], y["train"], x["validation"], y["validation"], config)
    log(f"trained {result.epochs_run} epochs (best {result.best_epoch}, early stop: {result.stopped_early}), "
        f"best val loss {result.best_val_loss:.4f}")
    from training import calibration  # lazy: imports scikit-learn, only when training runs

    cal = calibration.choose(y["validation"], predict(result.model, x["validation"]), BINARY_HEADS,
                             groups=parts["validation"].get("customer_id"), enabled=hps["calibrate"])
    raw_preds = predict(result.model, x["test"])
    preds = cal.apply(raw_preds)
    baselines = (fit_baselines(x["train"], y["train"], x["validation"], y["validation"], x["test"], config,
                               single_task_nets=hps["single_task_nets"]) if hps["baselines"] else None)
    ev = evaluate(preds, parts["test"], baselines, uncalibrated=raw_preds)
    table = format_table(ev)

    ts = frame["event_timestamp"] if "event_timestamp" in frame else None
    metadata = {
        "rows": {s: int(len(p)) for s, p in parts.items()},
        "data_from": str(ts.min()) if ts is not None else None,
        "data_to": str(ts.max()) if ts is not None else None,
        "test_metrics": {h: ev.metrics[h]["model"] for h in ev.metrics},
        "calibration_decisions": cal.decisions,
    }
    config_written = save_model_dir(model_dir, net=result.model, preprocessor=pre, train_config=config.to_dict(),
                                    train_summary=result.summary(), model_version=hps["model_version"] or None,
                                    metadata=metadata, calibration=cal.to_config())
    out = Path(output_data_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_report(ev, out, title=f"Model evaluation: {config_written['model_version']}",
                 card=model_card_facts(frame, schema, pre, cal.decisions),
                 context={"feature service": schema.feature_service, "best epoch": result.best_epoch,
                          "epochs run": result.epochs_run, "rows": metadata["rows"]})
    (out / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    metrics = {"model_version": config_written["model_version"], **ev.to_dict(),
               "wall_time_seconds": round(time.perf_counter() - started, 3)}
    metrics.pop("calibration")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True, default=float) + "\n")
    return TrainingOutcome(Path(model_dir), out, config_written, table, metrics)


def _failure_dir(environ: Mapping[str, str]) -> Path | None:
    if environ.get("SM_OUTPUT_DIR"):
        return Path(environ["SM_OUTPUT_DIR"])
    if environ.get("SM_OUTPUT_DATA_DIR"):
        return Path(environ["SM_OUTPUT_DATA_DIR"]).parent
    return None  # not on a training instance (or a local run without SM_*): stderr only


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        env = resolve_environment(argv, environ)
        outcome = run_training(env.train_dir, env.model_dir, env.output_data_dir, env.hyperparameters)
        print(outcome.table)
        print(f"model {outcome.model_config['model_version']} written to {outcome.model_dir}")
        return 0
    except Exception as exc:  # noqa: BLE001 - SageMaker reads the reason from the failure file
        reason = f"{type(exc).__name__}: {exc}"
        print(reason, file=sys.stderr)
        if not isinstance(exc, (HyperparameterError, DatasetError)):
            traceback.print_exc()
        failure_dir = _failure_dir(environ)
        if failure_dir is not None:
            try:
                failure_dir.mkdir(parents=True, exist_ok=True)
                (failure_dir / "failure").write_text(reason + "\n")
            except OSError:
                pass
        return 2 if isinstance(exc, (HyperparameterError, DatasetError, ValueError)) else 1


if __name__ == "__main__":
    sys.exit(main())
