"""The training loop shared by the neural baselines (MLP and GRU), with early stopping.

Both networks map a row of lagged spike counts to a behaviour sample, so one loop serves
them: standardise the features and the targets with training statistics (so a learning
rate suits every session), run AdamW on mini-batches of shuffled training samples, score
R^2 on the validation split after each epoch, and keep the weights of the best epoch.
Training stops once the validation R^2 has not improved for ``patience`` epochs. Every
random choice (initial weights, dropout, shuffling) comes from ``seed``, so a run repeats
exactly on the same machine.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from popdecode.baselines.selection import standardise, validation_score


@dataclass
class TrainConfig:
    """Optimisation settings of a neural baseline."""

    epochs: int = 100  # upper bound; early stopping usually ends sooner
    patience: int = 8  # epochs without a better validation R^2 before stopping
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    seed: int = 0


@dataclass
class NeuralModel:
    """A trained network with the statistics that turn raw counts into its inputs and back."""

    net: nn.Module
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    y_scale: np.ndarray
    best_epoch: int = 0
    valid_score: float = float("nan")  # validation R^2 of the best epoch (see selection.py)
    history: list[float] = field(default_factory=list)  # validation score per epoch
    seconds: float = 0.0

    def predict(self, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Behaviour predicted from raw lagged counts [N, P], in the targets' units."""
        Xs = ((np.asarray(X, dtype=np.float64) - self.x_mean) / self.x_scale).astype(np.float32)
        return _predict_standardised(self.net, Xs, batch_size) * self.y_scale + self.y_mean


def _predict_standardised(net: nn.Module, Xs: np.ndarray, batch_size: int) -> np.ndarray:
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(Xs), batch_size):
            outs.append(net(torch.from_numpy(Xs[i:i + batch_size])).numpy())
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outs).astype(np.float32)


def fit_regressor(
    net: nn.Module,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    config: TrainConfig,
    *,
    progress_bar=None,
) -> NeuralModel:
    """Train ``net`` (flat standardised features -> standardised targets) with early stopping.

    ``net`` must already be initialised (from ``config.seed``, by the caller). Returns a
    :class:`NeuralModel` holding the weights of the epoch with the best validation R^2.
    ``progress_bar``, if given, is a tqdm bar whose postfix shows the epoch and R^2.
    """
    if len(X_train) < 2 or len(X_valid) < 2:
        raise ValueError(f"need at least two training and two validation samples, got {len(X_train)} and {len(X_valid)}")
    start = time.perf_counter()
    x_mean, x_scale = standardise(X_train)
    y_train = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    y_mean, y_scale = standardise(y_train)
    Xt = torch.from_numpy(((X_train - x_mean) / x_scale).astype(np.float32))
    yt = torch.from_numpy(((y_train - y_mean) / y_scale).astype(np.float32))
    Xv = ((X_valid - x_mean) / x_scale).astype(np.float32)
    yv = ((np.asarray(y_valid, dtype=np.float64).reshape(len(y_valid), -1) - y_mean) / y_scale)

    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_score, best_epoch, best_state = -np.inf, 0, copy.deepcopy(net.state_dict())
    history: list[float] = []
    for epoch in range(1, config.epochs + 1):
        net.train()
        order = torch.randperm(len(Xt), generator=generator)
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            loss = nn.functional.mse_loss(net(Xt[idx]), yt[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        # R^2 is unchanged by the per-dimension affine standardisation of y.
        score = validation_score(yv, _predict_standardised(net, Xv, 8192))
        history.append(score)
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(net.state_dict())
        if progress_bar is not None:
            progress_bar.set_postfix(epoch=epoch, valid_r2=f"{score:.3f}", best=f"{best_score:.3f}")
        if epoch - best_epoch >= config.patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    return NeuralModel(
        net=net, x_mean=x_mean, x_scale=x_scale, y_mean=y_mean, y_scale=y_scale,
        best_epoch=best_epoch, valid_score=float(best_score), history=history,
        seconds=time.perf_counter() - start,
    )
