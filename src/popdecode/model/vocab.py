"""Embedding tables that grow: one row per unit (or session) the model has ever seen.

Units are never assumed to correspond across sessions, so every (session, unit) pair gets its
own row, named f"{session_id}/{unit_id}"; sessions get a row each too. A model trained on some
sessions learns a new one by *adding* rows (:meth:`Vocabulary.add`), which leaves every
existing row bit for bit as it was, so the old sessions decode exactly as before.

Row 0 is a zero padding row that no name maps to. New rows start as N(0, init_scale).

The table is an ordinary ``nn.Parameter`` (``weight``), so optimisers, DistributedDataParallel
and ``state_dict`` treat it like any other weight. Growing replaces that Parameter by a
longer one: build (or rebuild) the optimiser after calling :meth:`add`.

During adaptation some rows may instead be *mixtures* of the others (:class:`RowMixture`,
attached with :meth:`Vocabulary.mix_rows`): each new row is a softmax-weighted average of the
rows the model already knows, and only the mixing weights train. A new unit is then described
as "like these known units", which is what identifying it means, and it cannot drift to
places of the embedding space the network was never trained on. ``state_dict`` (and so every
saved model) holds the table the mixtures compute, so a saved model is an ordinary one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from popdecode.errors import UserError


class RowMixture:
    """Rows ``new_rows`` of a table, each a softmax mixture of rows ``known_rows``.

    ``logits`` [new, known] is the only parameter; it starts at zero, i.e. every new row starts
    as the mean of the known rows. Not an ``nn.Module`` on purpose: the owning table is saved
    as the values the mixtures give, never as logits (see :meth:`Vocabulary.table`).
    """

    def __init__(self, *, new_rows: torch.Tensor, known_rows: torch.Tensor, device=None):
        self.new_rows = torch.as_tensor(new_rows, dtype=torch.long, device=device)
        self.known_rows = torch.as_tensor(known_rows, dtype=torch.long, device=device)
        self.logits = nn.Parameter(torch.zeros(len(self.new_rows), len(self.known_rows), device=device))

    def apply(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` with the new rows replaced by their mixtures (differentiable in logits)."""
        mixed = torch.softmax(self.logits, dim=-1) @ weight[self.known_rows].detach()
        return weight.index_copy(0, self.new_rows, mixed.to(weight.dtype))


class Vocabulary(nn.Module):
    """A named, growing embedding table; ``vocab(rows)`` looks rows up."""

    def __init__(self, *, dim: int, init_scale: float = 0.02, kind: str = "unit"):
        super().__init__()
        self.dim, self.init_scale, self.kind = dim, init_scale, kind
        self.weight = nn.Parameter(torch.zeros(1, dim))  # row 0: padding
        self._names: list[str] = []
        self._rows: dict[str, int] = {}
        self.mixture: RowMixture | None = None

    @property
    def names(self) -> list[str]:
        """Names in row order: ``names[i]`` owns row ``i + 1``."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: str) -> bool:
        return name in self._rows

    def add(self, names: Iterable[str], *, exist_ok: bool = False) -> np.ndarray:
        """Append rows for ``names``; returns their rows (int64).

        With ``exist_ok`` names already present keep their row and values; otherwise they are
        an error. Existing rows are copied unchanged; new rows are drawn from N(0, init_scale)
        with torch's global generator.
        """
        names = [str(n) for n in names]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate {self.kind} names in add()")
        present = [n for n in names if n in self._rows]
        if present and not exist_ok:
            raise ValueError(f"{len(present)} {self.kind} name(s) already in the vocabulary, e.g. {present[0]!r}")
        new = [n for n in names if n not in self._rows]
        if new:
            old = self.weight.detach()
            fresh = torch.empty(len(new), self.dim, device=old.device, dtype=old.dtype)
            nn.init.normal_(fresh, mean=0.0, std=self.init_scale)
            self.weight = nn.Parameter(torch.cat([old, fresh]), requires_grad=self.weight.requires_grad)
            for n in new:
                self._rows[n] = len(self._names) + 1
                self._names.append(n)
        return self.index(names)

    def index(self, names: Iterable[str]) -> np.ndarray:
        """Rows of ``names`` (int64); an unknown name is a :class:`UserError`."""
        names = list(names)
        missing = [n for n in names if n not in self._rows]
        if missing:
            raise UserError(
                f"{len(missing)} {self.kind}(s) unknown to the model, e.g. {missing[0]!r}; "
                f"adapt the model to that session first (popdecode adapt)"
            )
        return np.fromiter((self._rows[n] for n in names), dtype=np.int64, count=len(names))

    def set_names(self, names: list[str]) -> None:
        """Name the rows of a table whose weights come from elsewhere (loading, converting).

        If the table does not have ``len(names) + 1`` rows it is replaced by a zero table of
        that size, ready for ``load_state_dict``.
        """
        names = [str(n) for n in names]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate {self.kind} names")
        if self.weight.shape[0] != len(names) + 1:
            old = self.weight
            self.weight = nn.Parameter(
                old.new_zeros(len(names) + 1, self.dim), requires_grad=old.requires_grad
            )
        self._names = list(names)
        self._rows = {n: i + 1 for i, n in enumerate(names)}

    def mix_rows(self, new: np.ndarray | torch.Tensor) -> RowMixture:
        """Make the rows where the boolean mask ``new`` is True mixtures of every other named row
        (row 0, padding, excluded); returns the :class:`RowMixture` whose ``logits`` to train."""
        new = torch.as_tensor(np.asarray(new, dtype=bool))
        if new.shape[0] != self.weight.shape[0] or bool(new[0]):
            raise ValueError("mix_rows: the mask must cover every row and leave row 0 (padding) out")
        known = (~new).nonzero().squeeze(1)
        known = known[known != 0]
        if len(known) == 0:
            raise UserError(f"the model has no known {self.kind}s to mix new ones from; use random new rows")
        self.mixture = RowMixture(new_rows=new.nonzero().squeeze(1), known_rows=known, device=self.weight.device)
        return self.mixture

    def table(self) -> torch.Tensor:
        """The table the model uses: ``weight``, with mixed rows where a mixture is attached."""
        return self.weight if self.mixture is None else self.mixture.apply(self.weight)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.mixture is not None:
            destination[prefix + "weight"] = self.table() if keep_vars else self.table().detach()

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return F.embedding(rows, self.table(), padding_idx=0)

    def extra_repr(self) -> str:
        return f"{self.kind}s={len(self)}, dim={self.dim}"
