"""The ``popdecode`` command line.

Every subcommand lives in the module of its pipeline stage and exposes two functions:

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int | None

The table below maps each subcommand to its module; modules are imported only when their
command runs, so ``popdecode --help`` stays fast. A :class:`~popdecode.errors.UserError`
becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from popdecode import __version__
from popdecode.errors import UserError

# name -> (module, one-line summary shown by `popdecode --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("popdecode.data.commands", "import NWB / brainsets / npz recordings into a store"),
    "inspect": ("popdecode.data.commands", "print a table of the sessions in a store"),
    "simulate": ("popdecode.simulate.command", "simulate a multi-animal reaching dataset with ground truth"),
    "train": ("popdecode.train.command", "train a POYO model on one or more stores"),
    "evaluate": ("popdecode.evaluate.command", "per-session R^2 of a trained model on a split"),
    "adapt": ("popdecode.adapt.command", "adapt a trained model to a new session from a few trials"),
    "baseline": ("popdecode.baselines.command", "Wiener filter, MLP or GRU on binned spike counts"),
    "serve": ("popdecode.serve.command", "decode a live LSL spike stream in real time and push behaviour to LSL"),
    "replay": ("popdecode.serve.replay", "stream a recorded session's spikes and behaviour over LSL in real time"),
    "report": ("popdecode.report.command", "write a self-contained HTML report of a run"),
    "quickstart": ("popdecode.quickstart", "simulate, pretrain, adapt, compare and report in minutes"),
    "convert-torch-brain": ("popdecode.model.convert", "turn a torch-brain POYO checkpoint into a popdecode run"),
}


def _module_entry(module: str, name: str):
    """The (add_arguments, run) pair of a command; commands sharing a module prefix theirs."""
    mod = importlib.import_module(module)
    suffix = name.replace("-", "_")
    add = getattr(mod, f"add_{suffix}_arguments", None) or getattr(mod, "add_arguments")
    run = getattr(mod, f"run_{suffix}", None) or getattr(mod, "run")
    return add, run, (mod.__doc__ or "").strip()


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="popdecode",
        description="Decode behaviour from spiking populations across sessions with POYO.",
    )
    parser.add_argument("--version", action="version", version=f"popdecode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        if name != selected:
            # Only the command being run is imported; the others just list their summary.
            sub.add_parser(name, help=summary)
            continue
        add, run, doc = _module_entry(module, name)
        p = sub.add_parser(
            name, help=summary, description=doc or summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        code = args._run(args)
    except UserError as err:
        print(f"popdecode: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("popdecode: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
