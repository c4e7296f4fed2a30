"""Everything a training run can be told, as one plain dataclass.

``popdecode train`` fills a :class:`TrainConfig` from its flags, the trainer reads nothing
else, and the run directory keeps a JSON copy (``train_config.json``) so that ``--resume``
and later readers know exactly how a model was made. Defaults are POYO's recipe
(spec sections 4 and 5) where the spec gives one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from popdecode.errors import UserError
from popdecode.model.config import PRESETS, POYOConfig
from popdecode.tokenize.sampler import SAMPLING_MODES

READOUT_BALANCES = ("readouts", "windows")  # TrainConfig.readout_balance
UNIT_INITS = ("random", "tuning")  # TrainConfig.unit_init (popdecode.train.unit_init)

# Interval-set name -> loss weight of the timestamps inside it (spec section 4: center-out).
DEFAULT_LOSS_WEIGHTS = {"hold": 0.1, "reach": 5.0, "return": 1.0, "outlier": 0.0}


@dataclass
class TrainConfig:
    # data ------------------------------------------------------------------------------
    data: list[str] = field(default_factory=list)  # store directories
    sessions: list[str] = field(default_factory=list)  # glob patterns on session ids (empty: all)
    exclude_sessions: list[str] = field(default_factory=list)  # glob patterns to drop
    # how an epoch's windows are shared among sessions (popdecode.tokenize.sampler):
    # "duration" (the paper's draw), "session" (equal shares), "sqrt", or one weight per session
    sampling: str | list[float] = "duration"
    # how readouts (tasks) weigh in each step's loss: "readouts" (each readout's weighted mean
    # once, however few of the batch's windows it supervises) or "windows" (each by its share
    # of the batch's windows, so that the sampler alone sets what every session gets)
    readout_balance: str = "readouts"
    # which recipe ``popdecode train`` resolved the unset flags from (popdecode.train.recipe);
    # a record only: the fields below are what the run uses
    recipe: str = "paper"
    # model -----------------------------------------------------------------------------
    preset: str = "poyo-1.3M"
    model_overrides: dict = field(default_factory=dict)  # preset fields to change, e.g. {"depth": 2}
    # where unit embeddings start: "random" (the paper's N(0, emb_init_scale)) or "tuning"
    # (moved towards what each unit encodes, through a projection all sessions share;
    # popdecode.train.unit_init)
    unit_init: str = "random"
    # optimisation ----------------------------------------------------------------------
    epochs: int = 100
    batch_size: int = 32
    lr: float | None = None  # peak learning rate; None: 3.125e-5 x batch size
    optimizer: str = "lamb"  # "lamb" or "adamw"
    weight_decay: float = 1e-4
    # the unit and session embedding tables' rate, as a multiple of the rest's
    embedding_lr_scale: float = 1.0
    max_steps: int | None = None  # stop after this many steps (the schedule still spans all epochs)
    # data augmentation and loss ---------------------------------------------------------
    unit_dropout: bool = True
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))
    # extra queries per readout over each training window's last end_span seconds
    # (TokenizerConfig.end_queries): for models that decode causally (popdecode serve,
    # evaluate --causal); end_only: those queries replace the window's own samples
    end_queries: int = 0
    end_span: float = 0.1
    end_only: bool = False
    # evaluation and bookkeeping ----------------------------------------------------------
    # which valid R^2 picks the kept model: "stitched" (the field's protocol, what
    # evaluate reports) or "causal" (each sample from the window ending at it, as serve runs)
    select: str = "stitched"
    eval_every: int = 1  # validate every N epochs (and always after the last one)
    eval_batch_size: int = 64
    checkpoint_every_steps: int = 0  # also save a resumable state every N steps (0: epoch ends only)
    time_budget_min: float | None = None  # stop cleanly once this much wall-clock time has passed
    tensorboard: bool = False
    # machine -----------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"  # "auto", "cpu" or "cuda"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    num_workers: int = 0  # DataLoader worker processes for tokenisation
    threads: int | None = None  # torch CPU threads (None: torch's default)
    compile: bool = False  # processor layers through TorchInductor (POYO.compile_for_training)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Refuse values that cannot work, with one line saying which flag to change."""
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1 (got {self.epochs})")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"--lr must be positive (got {self.lr})")
        if not self.embedding_lr_scale > 0:
            raise UserError(f"--embedding-lr-scale must be positive (got {self.embedding_lr_scale})")
        if self.unit_init not in UNIT_INITS:
            raise UserError(f"--unit-init must be one of {', '.join(UNIT_INITS)} (got {self.unit_init!r})")
        if self.optimizer not in ("lamb", "adamw"):
            raise UserError(f"--optimizer must be lamb or adamw (got {self.optimizer!r})")
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"--device must be auto, cpu or cuda (got {self.device!r})")
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"--precision must be fp32 or bf16 (got {self.precision!r})")
        if self.num_workers < 0:
            raise UserError(f"--num-workers must be 0 or more (got {self.num_workers})")
        if isinstance(self.sampling, str) and self.sampling not in SAMPLING_MODES:
            raise UserError(f"--sampling must be one of {', '.join(SAMPLING_MODES)} (got {self.sampling!r})")
        if self.readout_balance not in READOUT_BALANCES:
            raise UserError(f"--readout-balance must be one of {', '.join(READOUT_BALANCES)} (got {self.readout_balance!r})")
        if self.eval_every < 1:
            raise UserError(f"--eval-every must be at least 1 (got {self.eval_every})")
        if self.time_budget_min is not None and not self.time_budget_min > 0:
            raise UserError(f"--time-budget must be positive minutes (got {self.time_budget_min})")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps must be at least 1 (got {self.max_steps})")
        if self.end_queries < 0:
            raise UserError(f"--end-queries must be 0 or more (got {self.end_queries})")
        # The window is the preset's unless overridden (an unknown preset is refused where the model is built).
        preset = PRESETS.get(self.preset)
        window = self.model_overrides.get("window_length", preset.window_length if preset else POYOConfig.window_length)
        if not 0 <= self.end_span <= window:
            raise UserError(f"--end-span must be between 0 and the window's {window:g} s (got {self.end_span:g})")
        if self.end_only and self.end_queries < 1:
            raise UserError("--end-only trains on the end queries alone: give --end-queries N (e.g. 16) too")
        if self.select not in ("stitched", "causal"):
            raise UserError(f"--select must be stitched or causal (got {self.select!r})")
        if any(w < 0 for w in self.loss_weights.values()):
            raise UserError("loss weights must be >= 0")

    @property
    def peak_lr(self) -> float:
        from popdecode.train.schedule import default_lr

        return self.lr if self.lr is not None else default_lr(self.batch_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
