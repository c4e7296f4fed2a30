"""The GRU baseline: a recurrent network reading the lagged bins one after the other.

The GRU sees the same counts as the MLP, but as a sequence: ``lags + future`` steps, oldest
bin first, each step the vector of all units' counts in that bin (standardised). Its hidden
state after the last step goes through a linear layer to the behaviour. The recurrence
shares weights across bins, so it needs fewer parameters than the MLP for the same history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from popdecode.baselines.training import NeuralModel, TrainConfig, fit_regressor


@dataclass
class GRUConfig:
    """Shape of the GRU and how it is trained."""

    hidden: int = 128
    layers: int = 1
    dropout: float = 0.1  # on the final hidden state (and between layers when layers > 1)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=512, lr=2e-3))


class GRUDecoder(nn.Module):
    def __init__(self, *, num_units: int, num_bins: int, out_dim: int, hidden: int = 128,
                 layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.num_units, self.num_bins = num_units, num_bins
        self.gru = nn.GRU(num_units, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, bins * units] -> [B, D]
        seq = x.reshape(len(x), self.num_bins, self.num_units)  # bin-major layout of lagged_counts
        _, h = self.gru(seq)
        return self.readout(self.drop(h[-1]))


def fit_gru(
    X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray, y_valid: np.ndarray,
    *, num_bins: int, config: GRUConfig | None = None, progress_bar=None,
) -> NeuralModel:
    """Train a GRU on lagged counts [N, bins * units] (bin-major) -> targets [N, D]."""
    config = config or GRUConfig()
    P = np.asarray(X_train).shape[1]
    if num_bins < 1 or P % num_bins:
        raise ValueError(f"{P} features do not split into {num_bins} bins")
    y_dim = np.asarray(y_train).reshape(len(y_train), -1).shape[1]
    torch.manual_seed(config.train.seed)
    net = GRUDecoder(num_units=P // num_bins, num_bins=num_bins, out_dim=y_dim, hidden=config.hidden,
                     layers=config.layers, dropout=config.dropout)
    return fit_regressor(net, X_train, y_train, X_valid, y_valid, config.train, progress_bar=progress_bar)
