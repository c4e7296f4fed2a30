"""The MLP baseline: a small feed-forward network over the whole window of lagged counts.

Where the Wiener filter adds up lagged counts with fixed weights, the MLP can combine them
non-linearly (e.g. respond to a unit only when another is silent). Its input is the flat row
of ``lags + future`` bins x ``units`` counts, standardised; hidden layers are
Linear -> GELU -> Dropout; the last layer is linear, one output per behaviour dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from popdecode.baselines.training import NeuralModel, TrainConfig, fit_regressor


@dataclass
class MLPConfig:
    """Shape of the MLP and how it is trained."""

    hidden: int = 256
    layers: int = 2  # hidden layers
    dropout: float = 0.2
    train: TrainConfig = field(default_factory=TrainConfig)


class MLP(nn.Module):
    def __init__(self, *, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, P] -> [B, D]
        return self.net(x)


def fit_mlp(
    X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray, y_valid: np.ndarray,
    config: MLPConfig | None = None, *, progress_bar=None,
) -> NeuralModel:
    """Train an MLP on lagged counts [N, P] -> targets [N, D], early-stopped on valid R^2."""
    config = config or MLPConfig()
    y_dim = np.asarray(y_train).reshape(len(y_train), -1).shape[1]
    torch.manual_seed(config.train.seed)
    net = MLP(in_dim=np.asarray(X_train).shape[1], out_dim=y_dim, hidden=config.hidden,
              layers=config.layers, dropout=config.dropout)
    return fit_regressor(net, X_train, y_train, X_valid, y_valid, config.train, progress_bar=progress_bar)
