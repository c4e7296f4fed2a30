"""A model on disk: ``model.safetensors`` (weights) beside ``model.json`` (everything else).

``model.json`` holds the config, the readouts (name -> width, in readout-index order), the
unit and session vocabularies (names in row order; row 0 is padding) and a free-form
``meta`` dictionary the caller supplies (target normalisation, which readouts each session
supervises, training step, ...). Weights are plain tensors in safetensors; nothing is ever
unpickled. Both files are written atomically (each appears whole or not at all); the
safetensors file is written first and the JSON last, and loading checks that the two agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from popdecode.errors import UserError
from popdecode.model.config import POYOConfig
from popdecode.model.poyo import POYO
from popdecode.utils.atomic import atomic_path, write_json

FORMAT = "popdecode-poyo"
VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"


def save_model(run_dir: str | Path, model: POYO, meta: dict | None = None) -> None:
    """Write ``run_dir/model.safetensors`` and ``run_dir/model.json`` (creating ``run_dir``).

    ``meta`` must be JSON-serialisable; it comes back unchanged from :func:`load_model`.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "readouts": model.readout_dims,
        "unit_vocab": model.unit_vocab.names,
        "session_vocab": model.session_vocab.names,
        "meta": dict(meta or {}),
    }
    text = json.dumps(doc, indent=2)  # fails here, before any file is touched, if meta is not JSON
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    write_json(run_dir / META, json.loads(text))


def load_model(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[POYO, dict]:
    """Rebuild the model saved in ``run_dir``; returns ``(model, meta)``. The model is in eval mode."""
    run_dir = Path(run_dir)
    meta_path, weights_path = run_dir / META, run_dir / WEIGHTS
    if not meta_path.exists() or not weights_path.exists():
        raise UserError(f"{run_dir} holds no saved model ({META} and {WEIGHTS}); pass a run directory written by popdecode train")
    try:
        doc = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{meta_path} is not valid JSON ({err}); the run directory is damaged") from None
    if doc.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not a popdecode model file (format {doc.get('format')!r})")
    if doc.get("version", 0) > VERSION:
        raise UserError(f"{meta_path} has format version {doc['version']}; this popdecode reads up to {VERSION}: upgrade popdecode")

    model = POYO(config=POYOConfig.from_dict(doc["config"]), readouts=doc["readouts"])
    model.unit_vocab.set_names(doc["unit_vocab"])
    model.session_vocab.set_names(doc["session_vocab"])
    state = load_file(str(weights_path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise UserError(
            f"{weights_path} does not match {meta_path} ({first[1].strip() if len(first) > 1 else first[0]}); "
            "the two files come from different saves: save the model again"
        ) from None
    return model.to(device).eval(), doc.get("meta", {})
