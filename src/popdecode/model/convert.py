"""Turn a torch-brain POYO checkpoint into a popdecode run directory (model.json + model.safetensors).

torch-brain (the authors' package) and popdecode build the same network, so their weights
carry over one to one; only the names differ. This command reads their checkpoint without
unpickling arbitrary objects and writes a run that `popdecode evaluate` and `popdecode adapt`
accept, so that published POYO weights decode here.

Accepted inputs:

  * a Lightning checkpoint (.ckpt): a dict with "state_dict" (keys may start with "model.")
    and "hyper_parameters" (the POYO constructor arguments, possibly under "model"). It is
    read with torch.load(weights_only=True) only; if that refuses the file (it holds custom
    classes, e.g. an OmegaConf config), export a plain one first, as the error explains;
  * a plain state dict (.pt, .pth, via torch.load(weights_only=True), or .safetensors) with
    --hparams JSON giving at least sequence_length and latent_step. A safetensors file cannot
    hold the vocabularies: put them in the JSON as "unit_vocab" and "session_vocab" (names in
    row order, row 0 being padding, or a {name: row} map including "NA": 0).

Unit and session names are kept as torch-brain wrote them. The converted model has one
readout, named by --readout (default hand_vel); predictions are in whatever units the
checkpoint was trained on (torch-brain divides targets by a per-dataset scale; see
model.json's meta.converted_from for what is known).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
from pathlib import Path

import torch

from popdecode.errors import UserError
from popdecode.model.config import POYOConfig
from popdecode.model.poyo import POYO

# torch-brain's constructor defaults, used for hyperparameters a checkpoint does not state.
REFERENCE_DEFAULTS = dict(
    dim_head=64, ffn_dropout=0.2, lin_dropout=0.4, atn_dropout=0.0,
    emb_init_scale=0.02, t_min=1e-4, t_max=2.0627,
)

# Their parameter names -> ours (applied in order, first match wins). The vocabularies and the
# readout are handled separately; their rotary frequencies ("rotary_emb.omega") are checked
# against ours, not copied.
_RENAMES = [
    (r"^(enc|dec)_ffn\.0\.(weight|bias)$", r"\1_ffn.norm.\2"),
    (r"^(enc|dec)_ffn\.1\.net\.0\.(weight|bias)$", r"\1_ffn.up.\2"),
    (r"^(enc|dec)_ffn\.1\.net\.3\.(weight|bias)$", r"\1_ffn.down.\2"),
    (r"^proc_layers\.(\d+)\.0\.(.*)$", r"proc_layers.\1.attn.\2"),
    (r"^proc_layers\.(\d+)\.1\.0\.(weight|bias)$", r"proc_layers.\1.ffn.norm.\2"),
    (r"^proc_layers\.(\d+)\.1\.1\.net\.0\.(weight|bias)$", r"proc_layers.\1.ffn.up.\2"),
    (r"^proc_layers\.(\d+)\.1\.1\.net\.3\.(weight|bias)$", r"proc_layers.\1.ffn.down.\2"),
    (r"^((enc|dec)_atn\.(norm|norm_context|to_q|to_kv|to_out)\.(weight|bias))$", r"\1"),
    (r"^((token_type|latent)_emb\.weight)$", r"\1"),
]

EXPORT_HINT = (
    "export a plain checkpoint first, in a Python you trust with this file: "
    "c = torch.load(PATH, weights_only=False); "
    "torch.save({'state_dict': c['state_dict'], 'hyper_parameters': {'model': dict(c['hyper_parameters']['model'])}}, 'plain.ckpt')"
)


def _vocab_names(vocab, kind: str) -> list[str]:
    """Names in row order from their {name: row} map (row 0 = "NA") or a plain list."""
    if isinstance(vocab, (list, tuple)):
        return [str(n) for n in vocab]
    if not isinstance(vocab, dict):
        raise UserError(f"the checkpoint's {kind} vocabulary is missing or not a name -> row map")
    rows = {str(k): int(v) for k, v in vocab.items() if str(k) != "NA"}
    if sorted(rows.values()) != list(range(1, len(rows) + 1)):
        raise UserError(f"the checkpoint's {kind} vocabulary does not number its rows 1..{len(rows)}")
    return sorted(rows, key=rows.get)


def config_from_torch_brain(hparams: dict, state_dict: dict) -> POYOConfig:
    """Our config from their constructor arguments, with shapes read off the weights."""
    hp = dict(hparams.get("model", hparams)) if isinstance(hparams.get("model", None), dict) else dict(hparams)
    missing = [k for k in ("sequence_length", "latent_step") if k not in hp]
    if missing:
        raise UserError(
            f"the hyperparameters lack {', '.join(missing)}; pass --hparams JSON with e.g. "
            '{"sequence_length": 1.0, "latent_step": 0.125}'
        )
    get = lambda k: hp.get(k, REFERENCE_DEFAULTS[k])  # noqa: E731
    dim_head = int(get("dim_head"))
    n_lat, dim = state_dict["latent_emb.weight"].shape
    depth = len({m.group(1) for k in state_dict if (m := re.match(r"^proc_layers\.(\d+)\.", k))})
    cfg = POYOConfig(
        dim=int(dim),
        depth=depth,
        num_latents_per_step=int(n_lat),
        cross_heads=state_dict["enc_atn.to_q.weight"].shape[0] // dim_head,
        self_heads=(state_dict["proc_layers.0.0.to_qkv.weight"].shape[0] // 3 // dim_head) if depth else int(hp.get("self_heads", 8)),
        dim_head=dim_head,
        ffn_dropout=float(get("ffn_dropout")),
        lin_dropout=float(get("lin_dropout")),
        atn_dropout=float(get("atn_dropout")),
        window_length=float(hp["sequence_length"]),
        latent_step=float(hp["latent_step"]),
        t_min=float(get("t_min")),
        t_max=float(get("t_max")),
        emb_init_scale=float(get("emb_init_scale")),
    )
    for key, value in (("dim", cfg.dim), ("depth", cfg.depth), ("num_latents_per_step", cfg.num_latents_per_step),
                       ("cross_heads", cfg.cross_heads), ("self_heads", cfg.self_heads)):
        if key in hp and int(hp[key]) != value:
            raise UserError(f"hyperparameter {key}={hp[key]} disagrees with the weights ({value}); the checkpoint is inconsistent")
    return cfg


def from_torch_brain(state_dict: dict, hparams: dict, *, readout: str = "hand_vel", vocabs: dict | None = None) -> POYO:
    """A popdecode POYO holding the weights of a torch-brain POYO state dict.

    ``vocabs`` may supply {"unit_vocab": ..., "session_vocab": ...} when the state dict lacks
    them (safetensors files).
    """
    sd = {(k[len("model."):] if k.startswith("model.") else k): v for k, v in state_dict.items()}
    for key in ("latent_emb.weight", "unit_emb.weight", "session_emb.weight", "readout.weight", "enc_atn.to_q.weight"):
        if key not in sd:
            raise UserError(f"not a torch-brain POYO state dict: it has no {key!r}")
    vocabs = vocabs or {}
    cfg = config_from_torch_brain(hparams, sd)
    model = POYO(config=cfg, readouts={readout: int(sd["readout.weight"].shape[0])})

    ours: dict[str, torch.Tensor] = {}
    for name, table, vocab in (("unit", model.unit_vocab, "unit_emb"), ("session", model.session_vocab, "session_emb")):
        raw = vocabs.get(f"{name}_vocab", sd.get(f"{vocab}.vocab"))
        names = _vocab_names(raw, name)
        weight = sd[f"{vocab}.weight"]
        if isinstance(raw, dict):  # rows as they number them; row 0 stays padding
            rows = [0] + [int(raw[n]) for n in names]
            weight = weight[torch.tensor(rows)]
        if weight.shape[0] != len(names) + 1:
            raise UserError(f"the {name} table has {weight.shape[0]} rows for {len(names)} names (+1 padding)")
        table.set_names(names)
        ours[f"{name}_vocab.weight"] = weight
    ours[f"readouts.{readout}.weight"] = sd["readout.weight"]
    ours[f"readouts.{readout}.bias"] = sd["readout.bias"]
    for key, value in sd.items():
        for pattern, repl in _RENAMES:
            if re.match(pattern, key):
                ours[re.sub(pattern, repl, key)] = value
                break

    if "rotary_emb.omega" in sd:  # their frequencies, zero-padded to dim_head / 2
        theirs = sd["rotary_emb.omega"].float()[: model.omega.numel()]
        if not torch.allclose(theirs, model.omega, rtol=1e-6, atol=0):
            t_lo, t_hi = 2 * math.pi / float(theirs[0]), 2 * math.pi / float(theirs[-1])
            raise UserError(f"the checkpoint's rotary periods ({t_lo:g} to {t_hi:g} s) disagree with its t_min/t_max; pass them in --hparams")
    try:
        model.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
    except RuntimeError as err:
        raise UserError(f"the checkpoint does not fit a POYO of its own hyperparameters: {str(err).splitlines()[1].strip()}") from None
    return model.eval()


def read_checkpoint(path: Path, hparams_path: Path | None) -> tuple[dict, dict, dict]:
    """(state_dict, hyperparameters, extra vocabularies) from one of the accepted files."""
    if not path.exists():
        raise UserError(f"{path} does not exist")
    extra: dict = {}
    if hparams_path is not None:
        try:
            extra = json.loads(hparams_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read --hparams {hparams_path}: {err}") from None
        if not isinstance(extra, dict):
            raise UserError(f"--hparams {hparams_path} must hold a JSON object")
    vocabs = {k: extra.pop(k) for k in ("unit_vocab", "session_vocab") if k in extra}

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise UserError(f"{path} is not a readable safetensors file ({err})") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
            if "weights_only" in str(err) or isinstance(err, pickle.UnpicklingError):
                raise UserError(f"{path} holds Python objects that a safe load refuses; {EXPORT_HINT.replace('PATH', repr(str(path)))}") from None
            raise UserError(f"{path} is not a readable PyTorch checkpoint ({str(err).splitlines()[0]})") from None
        except Exception as err:
            raise UserError(f"{path} is not a readable PyTorch checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    if "state_dict" in obj:
        state_dict, hparams = obj["state_dict"], obj.get("hyper_parameters") or {}
        if not isinstance(hparams, dict):
            raise UserError(f"{path}: hyper_parameters is a {type(hparams).__name__}, not a dict; {EXPORT_HINT.replace('PATH', repr(str(path)))}")
    else:
        state_dict, hparams = obj, {}
    hparams = dict(hparams.get("model", hparams)) if isinstance(hparams.get("model"), dict) else dict(hparams)
    hparams.update(extra.get("model", extra) if isinstance(extra.get("model"), dict) else extra)
    if not hparams:
        raise UserError(f"{path} carries no hyperparameters; pass --hparams JSON (sequence_length, latent_step, ...)")
    return state_dict, hparams, vocabs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", type=Path,
                        help="torch-brain POYO checkpoint: Lightning .ckpt, or a state dict (.pt/.safetensors) with --hparams")
    parser.add_argument("--out", required=True, type=Path, metavar="RUN",
                        help="run directory to write (model.json + model.safetensors)")
    parser.add_argument("--readout", default="hand_vel", metavar="NAME",
                        help="name of the converted model's readout (default: hand_vel)")
    parser.add_argument("--hparams", type=Path, metavar="JSON",
                        help="JSON of POYO constructor arguments (and, for .safetensors, unit_vocab/session_vocab)")
    parser.add_argument("--force", action="store_true", help="overwrite a model already in RUN")


def run(args: argparse.Namespace) -> int:
    from popdecode.model.io import META, save_model

    out: Path = args.out
    if (out / META).exists() and not args.force:
        raise UserError(f"{out} already holds a model; choose another --out or pass --force")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", args.readout):
        raise UserError(f"--readout {args.readout!r}: use letters, digits, '_' or '-'")
    state_dict, hparams, vocabs = read_checkpoint(args.checkpoint, args.hparams)
    model = from_torch_brain(state_dict, hparams, readout=args.readout, vocabs=vocabs)
    save_model(out, model, meta={
        "converted_from": {
            "file": str(args.checkpoint),
            "format": "torch-brain POYO",
            "hyper_parameters": {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))},
            "target_scale": "unknown: predictions are in the checkpoint's training units",
        }
    })
    c = model.config
    print(f"wrote {out}: dim {c.dim}, depth {c.depth}, {len(model.unit_vocab)} units, "
          f"{len(model.session_vocab)} sessions, readout {args.readout} ({model.readout_dims[args.readout]}-D)")
    return 0
