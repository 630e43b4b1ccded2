"""The multi-task network: one shared MLP trunk, one small linear head per task.

Heads (output names are the serving contract):

* ``churn_risk_30d``        logit -> P(churn_30d)            BCE
* ``ib_call_risk_14d``      logit -> P(ib_calls_14d)         BCE
* ``customer_health_score`` raw   -> 100 * sigmoid(raw)      MSE on the 0-1 scale

Loss = sum_task weight_task * loss_task, every term on a comparable scale:

* binary tasks: BCE with ``pos_weight`` w = clip(neg/pos, 1, max_pos_weight) (class
  imbalance: the rare positives get as much gradient as the negatives). Weighted BCE
  shifts the optimal logit by exactly +log(w) (its optimum has odds' = w * odds), so the
  net stores log(w) as a per-head ``logit_offsets`` buffer and subtracts it at
  prediction time: the probabilities stay calibrated.
* health: MSE of the 0-1 score divided by the train variance of the label (i.e. 1 - R^2
  on train), so its scale does not depend on how spread the scores are.

Training is deterministic for a seed (seeded init, dropout and shuffling; deterministic
algorithms; one intra-op thread while training) and early-stops on the validation loss,
restoring the best epoch's weights.

Ensembles (``TrainConfig.ensemble`` = k > 1): k nets of the same architecture, trained
independently with seeds ``seed * k + i``; an ``EnsembleNet`` averages their probabilities and
scores. The health label is a noisy 30-day count; averaging nets that each fit a different share
of that noise lowers the variance of the health predictions (docs/model.md).

This file is copied verbatim into the artifact's ``code/`` directory: it needs only
torch and numpy.
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

BINARY_HEADS = ("churn_risk_30d", "ib_call_risk_14d")
REGRESSION_HEADS = ("customer_health_score",)
HEADS = BINARY_HEADS + REGRESSION_HEADS
#: head -> dataset label column (training/labels.py)
HEAD_LABELS = {"churn_risk_30d": "churn_30d", "ib_call_risk_14d": "ib_calls_14d",
               "customer_health_score": "health_score"}
HEALTH_SCALE = 100.0


@dataclass
class NetConfig:
    """Architecture: everything needed to rebuild the net before loading its state_dict."""

    input_dim: int
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    heads: tuple[str, ...] = HEADS
    members: int = 1             # > 1: an EnsembleNet of that many nets

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.heads = tuple(self.heads)
        unknown = [h for h in self.heads if h not in HEADS]
        if unknown or not self.heads:
            raise ValueError(f"heads must be a non-empty subset of {HEADS}, got {list(self.heads)}")
        if int(self.members) < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        self.members = int(self.members)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"], d["heads"] = list(self.hidden), list(self.heads)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NetConfig":
        return cls(int(d["input_dim"]), tuple(d["hidden"]), float(d["dropout"]), tuple(d["heads"]),
                   int(d.get("members", 1)))


class MultiTaskNet(nn.Module):
    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.input_dim
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(config.dropout)]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({name: nn.Linear(width, 1) for name in config.heads})
        # log(pos_weight) per head, subtracted from binary logits at prediction (see module doc)
        self.register_buffer("logit_offsets", torch.zeros(len(config.heads)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs per head, shape (N,): training-time logits (before the offset)."""
        z = self.trunk(x)
        return {name: head(z).squeeze(-1) for name, head in self.heads.items()}

    def predict_tensors(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raw = self.forward(x)
        out = {}
        for i, name in enumerate(self.config.heads):
            if name in BINARY_HEADS:
                out[name] = torch.sigmoid(raw[name] - self.logit_offsets[i])
            else:
                out[name] = HEALTH_SCALE * torch.sigmoid(raw[name])
        return out


class EnsembleNet(nn.Module):
    """``config.members`` MultiTaskNets; predictions are the mean of theirs (probabilities, scores).

    The state_dict is the members' (``members.<i>.…``), so artifacts stay loadable as they are. In
    eval mode the members run as one batched forward pass: their weights stacked into one tensor
    per layer (built from the members' parameters and rebuilt whenever one changes), the first layer
    one matmul over all members, the rest ``baddbmm`` over the member axis. Training mode (dropout)
    runs the members one after another.
    """

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        single = NetConfig(config.input_dim, config.hidden, config.dropout, config.heads)
        self.members = nn.ModuleList(MultiTaskNet(single) for _ in range(config.members))
        self._stacked_cache: tuple[tuple[int, ...], dict[str, torch.Tensor]] | None = None
        self._stacked_from: list[torch.Tensor] | None = None

    def predict_tensors(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            outs = [m.predict_tensors(x) for m in self.members]
            return {h: torch.stack([o[h] for o in outs]).mean(dim=0) for h in self.config.heads}
        return self._batched_predict(x)

    def _stacked(self) -> dict[str, torch.Tensor]:
        """Member weights stacked per layer; cached until a parameter or buffer is modified in place
        (optimizer steps, ``load_state_dict``) or given new storage (``.data =``, ``.to()``)."""
        if self._stacked_from is None:  # walking the module tree costs more than the forward pass of one row
            self._stacked_from = list(self.parameters()) + list(self.buffers())
        tensors = self._stacked_from
        key = tuple(t._version for t in tensors) + tuple(t.data_ptr() for t in tensors)
        if self._stacked_cache is not None and self._stacked_cache[0] == key:
            return self._stacked_cache[1]
        with torch.no_grad():
            linears = [[layer for layer in m.trunk if isinstance(layer, nn.Linear)] for m in self.members]
            stacked: dict[str, torch.Tensor] = {}
            for j in range(1, len(self.config.hidden)):
                w = torch.stack([ls[j].weight for ls in linears])            # (k, out, in)
                stacked[f"w{j}"] = w.transpose(1, 2).contiguous()             # (k, in, out)
                stacked[f"b{j}"] = torch.stack([ls[j].bias for ls in linears]).unsqueeze(1)  # (k, 1, out)
            heads = self.config.heads
            stacked["wh"] = torch.stack([torch.cat([m.heads[h].weight for h in heads]).t()
                                         for m in self.members]).contiguous()  # (k, width, n_heads)
            stacked["bh"] = torch.stack([torch.cat([m.heads[h].bias for h in heads])
                                         for m in self.members]).unsqueeze(1)  # (k, 1, n_heads)
            binary = torch.tensor([h in BINARY_HEADS for h in heads])
            # per head: the logit offset (binary heads only, as MultiTaskNet) and the output scale
            stacked["offsets"] = (torch.stack([m.logit_offsets for m in self.members]) * binary).unsqueeze(1)
            stacked["scale"] = torch.where(binary, 1.0, HEALTH_SCALE)
            if self.config.hidden:  # the first layer sees the same x for every member: one linear map
                stacked["w0_cat"] = torch.cat([ls[0].weight for ls in linears])   # (k * h0, in)
                stacked["b0_cat"] = torch.cat([ls[0].bias for ls in linears])
        self._stacked_cache = (key, stacked)
        return stacked

    def _batched_predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self._stacked()
        k, n = self.config.members, x.shape[0]
        if self.config.hidden:
            width = self.config.hidden[0]
            z = nn.functional.linear(x, s["w0_cat"], s["b0_cat"]).relu_()
            z = z.reshape(n, k, width).transpose(0, 1)                                # (k, n, h0)
            for j in range(1, len(self.config.hidden)):
                z = torch.baddbmm(s[f"b{j}"], z, s[f"w{j}"]).relu_()
        else:
            z = x.unsqueeze(0).expand(k, n, x.shape[1])
        raw = torch.baddbmm(s["bh"], z, s["wh"])                                      # (k, n, n_heads)
        mean = (torch.sigmoid(raw - s["offsets"]) * s["scale"]).mean(dim=0)             # (n, n_heads)
        return {name: mean[:, i] for i, name in enumerate(self.config.heads)}


def build_net(config: NetConfig) -> nn.Module:
    return MultiTaskNet(config) if config.members == 1 else EnsembleNet(config)


def predict(model: MultiTaskNet | EnsembleNet, x: np.ndarray, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Probabilities for binary heads, 0-100 scores for health; float64 numpy arrays."""
    if model.training:  # eval() walks every module: skip it when there is nothing to switch
        model.eval()
    parts: dict[str, list[np.ndarray]] = {h: [] for h in model.config.heads}
    with torch.no_grad():
        for start in range(0, max(len(x), 1), batch_size):
            xb = torch.as_tensor(np.asarray(x[start:start + batch_size], dtype=np.float32))
            if len(xb) == 0:
                continue
            for name, t in model.predict_tensors(xb).items():
                parts[name].append(t.double().numpy())
    return {h: (np.concatenate(v) if v else np.zeros(0)) for h, v in parts.items()}


# --- training ----------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    patience: int = 5            # epochs without a val-loss improvement before stopping
    min_delta: float = 1e-4      # smaller improvements do not count
    seed: int = 0
    task_weights: dict[str, float] = field(default_factory=lambda: {h: 1.0 for h in HEADS})
    pos_weight: str | float = "auto"   # "auto" = clip(neg/pos, 1, max_pos_weight); a number; or "none"
    max_pos_weight: float = 3.0
    ensemble: int = 1            # nets trained with seeds seed * ensemble + i, predictions averaged
    check_rows: int = 8192       # a validation check every this many training rows (at least one per epoch)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass
class TrainResult:
    """For an ensemble: best_epoch, epochs_run and stopped_early per member, best_val_loss their
    mean, history every member's epochs (with a ``member`` field)."""

    model: MultiTaskNet | EnsembleNet
    history: list[dict[str, float]]
    best_epoch: int | list[int]
    epochs_run: int | list[int]
    stopped_early: bool | list[bool]
    best_val_loss: float
    pos_weights: dict[str, float]
    health_variance: float | None

    def summary(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
                "stopped_early": self.stopped_early, "best_val_loss": self.best_val_loss,
                "pos_weights": self.pos_weights, "health_label_variance": self.health_variance}


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch and force deterministic kernels on one thread; restore the settings after."""
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # CPU reductions split across threads can round differently
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic)


def _pos_weight(y: np.ndarray, config: TrainConfig) -> float:
    if isinstance(config.pos_weight, str):
        if config.pos_weight == "none":
            return 1.0
        if config.pos_weight != "auto":
            raise ValueError(f"pos_weight must be 'auto', 'none' or a number, got {config.pos_weight!r}")
        y = y[~np.isnan(y)]
        pos = float(y.sum())
        neg = float(len(y) - pos)
        if pos == 0:
            return 1.0
        return float(min(max(neg / pos, 1.0), config.max_pos_weight))
    w = float(config.pos_weight)
    if not w > 0:
        raise ValueError(f"pos_weight must be > 0, got {w}")
    return w


def _label_matrix(y: Mapping[str, Any], heads: Sequence[str], n: int) -> np.ndarray:
    missing = [h for h in heads if h not in y]
    if missing:
        raise ValueError(f"labels missing for heads: {missing}")
    mat = np.column_stack([np.asarray(y[h], dtype=np.float64) for h in heads]) if heads else np.zeros((n, 0))
    if mat.shape[0] != n:
        raise ValueError(f"labels have {mat.shape[0]} rows, features have {n}")
    return mat


class _Loss:
    """Weighted sum of per-task losses; NaN labels are masked out of their task."""

    def __init__(self, heads: Sequence[str], weights: Mapping[str, float], pos_weights: Mapping[str, float],
                 health_variance: float | None):
        self.heads = list(heads)
        self.weights = torch.tensor([float(weights.get(h, 1.0)) for h in heads], dtype=torch.float32)
        self.pos_weights = {h: torch.tensor(pos_weights[h], dtype=torch.float32) for h in pos_weights}
        self.health_variance = health_variance

    def __call__(self, raw: Mapping[str, torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
        total = torch.zeros(())
        parts = []
        for j, h in enumerate(self.heads):
            target = y[:, j]
            mask = ~torch.isnan(target)
            if not bool(mask.any()):
                parts.append(float("nan"))
                continue
            out, target = raw[h][mask], target[mask]
            if h in BINARY_HEADS:
                loss = nn.functional.binary_cross_entropy_with_logits(out, target, pos_weight=self.pos_weights[h])
            else:
                pred = torch.sigmoid(out)
                loss = torch.mean((pred - target / HEALTH_SCALE) ** 2) / self.health_variance
            parts.append(float(loss.detach()))
            total = total + self.weights[j] * loss
        return total, parts


def train_multitask(x_train: np.ndarray, y_train: Mapping[str, Any], x_val: np.ndarray, y_val: Mapping[str, Any],
                    config: TrainConfig | None = None, heads: Sequence[str] = HEADS) -> TrainResult:
    """Fit a MultiTaskNet (or a single-task net when ``heads`` has one name).

    ``y_*`` map head name -> labels (0/1 for binary heads, 0-100 for health; NaN = unknown).
    """
    config = config or TrainConfig()
    heads = tuple(heads)
    if config.ensemble > 1:
        return _train_ensemble(x_train, y_train, x_val, y_val, config, heads)
    bad_weights = [k for k in config.task_weights if k not in HEADS]
    if bad_weights:
        raise ValueError(f"task_weights has unknown heads {bad_weights}; expected a subset of {HEADS}")
    x_train = np.asarray(x_train, dtype=np.float32)
    x_val = np.asarray(x_val, dtype=np.float32)
    ytr = _label_matrix(y_train, heads, len(x_train))
    yva = _label_matrix(y_val, heads, len(x_val))
    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError(f"need train and validation rows, got {len(x_train)} and {len(x_val)}")

    pos_weights = {h: _pos_weight(ytr[:, j], config) for j, h in enumerate(heads) if h in BINARY_HEADS}
    health_variance = None
    if "customer_health_score" in heads:
        col = ytr[:, heads.index("customer_health_score")] / HEALTH_SCALE
        health_variance = float(max(np.nanvar(col), 1e-4))
    loss_fn = _Loss(heads, config.task_weights, pos_weights, health_variance)

    with deterministic(config.seed):
        model = MultiTaskNet(NetConfig(x_train.shape[1], tuple(config.hidden), config.dropout, heads))
        with torch.no_grad():
            model.logit_offsets.copy_(torch.tensor(
                [math.log(pos_weights[h]) if h in pos_weights else 0.0 for h in heads]))
        opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        gen = torch.Generator().manual_seed(config.seed)
        xt, yt = torch.from_numpy(x_train), torch.from_numpy(ytr.astype(np.float32))
        xv, yv = torch.from_numpy(x_val), torch.from_numpy(yva.astype(np.float32))
        history: list[dict[str, float]] = []
        best_loss, best_epoch, best_state, since_best = math.inf, 0, copy.deepcopy(model.state_dict()), 0
        stopped_early = False
        # Validation checks at evenly spaced batches, one per check_rows training rows: the nets overfit
        # after a fixed number of passes over each customer's rows, so on a large training set the best
        # point comes within the first epoch and a check per epoch would be too coarse to find it.
        n_batches = math.ceil(len(xt) / config.batch_size)
        checks = max(1, min(n_batches, round(len(xt) / max(int(config.check_rows), 1))))
        check_after = {math.ceil(n_batches * (k + 1) / checks) - 1: k for k in range(checks)}
        epoch = 0
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(len(xt), generator=gen)
            seen, running = 0, 0.0
            model.train()
            for b, start in enumerate(range(0, len(order), config.batch_size)):
                idx = order[start:start + config.batch_size]
                loss, _ = loss_fn(model(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                running += float(loss.detach()) * len(idx)
                seen += len(idx)
                if b not in check_after:
                    continue
                model.eval()
                with torch.no_grad():
                    val_loss, val_parts = loss_fn(model(xv), yv)
                model.train()
                val = float(val_loss)
                # the epoch of this check: whole with one check per epoch, else a fraction (3 decimals)
                at = epoch if checks == 1 else round(epoch - 1 + (check_after[b] + 1) / checks, 3)
                history.append({"epoch": at, "train_loss": running / seen, "val_loss": val,
                                **{f"val_loss_{h}": p for h, p in zip(heads, val_parts)}})
                if val < best_loss - config.min_delta:
                    best_loss, best_epoch, since_best = val, at, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += 1
                    if since_best >= config.patience:
                        stopped_early = True
                        break
            if stopped_early:
                break
        model.load_state_dict(best_state)
        model.eval()
    epochs_run = epoch if checks == 1 else history[-1]["epoch"]
    return TrainResult(model, history, best_epoch, epochs_run, stopped_early, best_loss, pos_weights,
                       health_variance)


def _train_ensemble(x_train, y_train, x_val, y_val, config: TrainConfig, heads: tuple[str, ...]) -> TrainResult:
    k = int(config.ensemble)
    runs = [train_multitask(x_train, y_train, x_val, y_val,
                            replace(config, ensemble=1, seed=config.seed * k + i), heads) for i in range(k)]
    first = runs[0].model.config
    model = EnsembleNet(NetConfig(first.input_dim, first.hidden, first.dropout, first.heads, members=k))
    for member, run in zip(model.members, runs):
        member.load_state_dict(run.model.state_dict())
    model.eval()
    return TrainResult(model, [{"member": i, **row} for i, run in enumerate(runs) for row in run.history],
                       [r.best_epoch for r in runs], [r.epochs_run for r in runs], [r.stopped_early for r in runs],
                       float(np.mean([r.best_val_loss for r in runs])), runs[0].pos_weights, runs[0].health_variance)


def load_model(state_path: str, net_config: Mapping[str, Any]) -> MultiTaskNet | EnsembleNet:
    """Rebuild the net from its config and load a ``model.pt`` state_dict (weights only, no pickle code)."""
    model = build_net(NetConfig.from_dict(net_config))
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model
