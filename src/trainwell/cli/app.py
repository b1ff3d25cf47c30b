"""The ``trainwell`` command.

    trainwell train [CONFIG] [--set KEY=VALUE ...] [--out DIR] [--resume RUN_DIR]
    trainwell config show [CONFIG] [--set KEY=VALUE ...]
    trainwell lr-find [CONFIG] [--set ...] [--out DIR]
    trainwell doctor CONFIG ... | trainwell report RUN_DIR | trainwell experiment NAME ...

Bad input of any kind prints one line, ``error: ...``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from .._version import __version__
from ..config import load_config, to_toml
from ..doctor import DoctorCallback
from ..errors import UserError
from ..train.distributed import is_main_process, shutdown
from .args import add_config_args
from .extensions import REGISTRARS
from .lr_find import run_lr_find
from .report_table import print_run_summary
from .rundir import choose_run_dir, resume_config, run_guarded
from .runner import run

__all__ = ["main", "build_parser"]

_STARTED = time.perf_counter()


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}; see {self.prog} --help")


def _cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.config is not None:
            raise UserError("--resume: give either CONFIG or --resume RUN_DIR, not both "
                            "(the run's own config.toml is used)")
        # the run's own config; a --set that changes what the checkpoint depends on is refused
        config = resume_config(args.resume, args.overrides)
        out = Path(args.resume)
    else:
        config = load_config(args.config, args.overrides)
        out, note = choose_run_dir(Path(args.out) if args.out else Path("runs") / config.name,
                                   default=args.out is None)
        if note:
            print(note)

    doctor = DoctorCallback(report=True)
    main = is_main_process()  # under torchrun: the doctor probes and rank 0 prints, alone
    ok = False
    try:
        result = run(config, out, progress=not args.quiet, resume=args.resume is not None,
                     started=_STARTED, callbacks=[doctor] if main else [])
        ok = True
    finally:
        shutdown(meet=ok)
    if not main:
        return 0
    print_run_summary(result)
    findings = doctor.findings()
    if findings:
        kinds = ", ".join(f.kind for f in findings)
        print(f"doctor: {kinds} (evidence in {out / 'report.html'}; trainwell doctor CONFIG "
              "tries repairs)")
    else:
        print(f"doctor: no findings; health report in {out / 'report.html'}")
    failure = result.summary.get("failure")
    if failure:  # most steps skipped, or a non-finite final loss: never a silent success
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    sys.stdout.write(to_toml(load_config(args.config, args.overrides)))
    return 0


def _cmd_lr_find(args: argparse.Namespace) -> int:
    return run_lr_find(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``trainwell`` command (subcommands registered here)."""

    parser = _Parser(prog="trainwell", description="Train deep neural networks well.")
    parser.add_argument("--version", action="version", version=f"trainwell {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an internal error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="train a network from a config (default: MNIST-1D MLP)")
    add_config_args(p)
    p.add_argument("--out", help="run folder (default: runs/NAME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("config", help="show the fully resolved config")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    ps = csub.add_parser("show", help="print the resolved config as TOML")
    add_config_args(ps)
    ps.set_defaults(func=_cmd_config_show)

    p = sub.add_parser("lr-find", help="sweep the learning rate and suggest one")
    add_config_args(p)
    p.add_argument("--out", help="folder for lr_find.png and lr_find.json (default: runs/NAME-lr-find)")
    p.add_argument("--steps", type=int, default=200, help="sweep steps")
    p.set_defaults(func=_cmd_lr_find)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable]:
    """Subcommands contributed by upper layers (doctor, experiments, transfer)."""

    return list(REGISTRARS)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings on the command line are one line each, like errors: no source excerpt."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainwell`` console script; returns the exit code."""
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        func = args.func
        return run_guarded(lambda: int(func(args) or 0), debug=args.debug)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
