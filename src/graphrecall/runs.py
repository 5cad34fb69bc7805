"""Run integrity: one folder per launch, never reused for a finished run, and a run stopped by
SIGTERM exits non-zero with a log line.

* Run folders are named ``<date>_<time>_<launch id>`` (``${run_id:}`` in ``conf/*.yaml``): the launch
  id (process id + 4 random hex digits, fixed for the process) keeps two launches in the same second
  apart.
* A finished run's files never change. :func:`refuse_used_output_dirs` runs before Hydra starts
  (``train.py`` / ``evaluate.py`` ``__main__``) and refuses an explicit ``hydra.run.dir`` or
  ``hydra.sweep.dir`` that already holds anything, before Hydra rewrites its ``.hydra/`` files or
  ``multirun.yaml``. :func:`claim_run_dir` (every ``train(cfg)``, also outside Hydra) refuses a
  folder holding an earlier run, finished (``metrics.json``) or not (``config_resolved.json``,
  ``checkpoints/``: a killed run, whose ``last.ckpt`` would otherwise sit beside this run's
  ``last-v1.ckpt``). To continue a killed run, resume it into a new folder
  (``model.resume_from=<old run>/checkpoints/last.ckpt``).
* :func:`terminated_exits_nonzero` turns SIGTERM (also Lightning's ``SIGTERMException``, a
  ``SystemExit`` without a code, i.e. exit status 0) into exit status 143 (128 + SIGTERM).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

log = logging.getLogger("graphrecall.runs")

EXIT_SIGTERM = 128 + signal.SIGTERM  # 143, the shell's convention for "killed by SIGTERM"
FINISHED_MARKER = "metrics.json"
RUN_ID = f"{os.getpid()}-{secrets.token_hex(2)}"


def register_resolvers() -> None:
    """``${run_id:}``: this launch's id (one value per process, so a sweep's jobs share it)."""
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", lambda: RUN_ID)


register_resolvers()


RUN_MARKERS = (FINISHED_MARKER, "config_resolved.json", "checkpoints")  # what a train run writes first / last


class RunDirInUse(FileExistsError):
    """An output folder already holds an earlier run (or an evaluation, or a sweep)."""


def claim_run_dir(out: Path) -> Path:
    """Create ``out``; refuse it when it holds an earlier run: finished (``metrics.json``) or
    started and stopped (``config_resolved.json``, ``checkpoints/``). Hydra's own ``.hydra/`` of the
    current launch is not an earlier run."""
    out = Path(out)
    if (out / FINISHED_MARKER).exists():
        raise RunDirInUse(
            f"{out} already holds a finished run ({FINISHED_MARKER}); refusing to overwrite it: "
            "give a new folder (run_dir=... or hydra.run.dir=...)"
        )
    found = [m for m in RUN_MARKERS[1:] if (out / m).exists()]
    if found:
        raise RunDirInUse(
            f"{out} holds an unfinished earlier run ({', '.join(found)}; killed or failed): refusing to mix its files "
            "with this run's; give a new folder, and to continue that run resume it there with "
            f"model.resume_from={out / 'checkpoints' / 'last.ckpt'}"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _given_dirs(argv: list[str]) -> dict[str, str]:
    """``hydra.run.dir`` / ``hydra.sweep.dir`` given on the command line (without interpolations:
    those hold a time stamp and this launch's id, never an existing folder)."""
    given = {}
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key in ("hydra.run.dir", "hydra.sweep.dir") and "${" not in value:
            given[key] = value.strip("'\"")
    return given


def refuse_used_output_dirs(argv: list[str], what: str = "train") -> None:
    """Before Hydra writes anything: refuse a ``hydra.run.dir`` / ``hydra.sweep.dir`` from the
    command line that exists and is not empty (a finished or killed run, an evaluation, a train
    run given to ``evaluate.py``, a sweep). Raises :class:`RunDirInUse`, naming the folder and
    what it holds; an empty or missing folder passes."""
    for key, value in _given_dirs(argv).items():
        folder = Path(value)
        if not folder.is_dir():
            if folder.exists():
                raise RunDirInUse(f"{key}={value} is a file, not a folder")
            continue
        held = sorted(p.name for p in folder.iterdir())
        if not held:
            continue
        kind = ("a finished run" if (folder / FINISHED_MARKER).exists() and (folder / "config_resolved.json").exists()
                else "an evaluation" if (folder / FINISHED_MARKER).exists()
                else "a sweep" if (folder / "multirun.yaml").exists()
                else "an unfinished run" if any((folder / m).exists() for m in RUN_MARKERS[1:]) else "files")
        shown = ", ".join(held[:6]) + (", ..." if len(held) > 6 else "")
        hint = (" (evaluate.py never writes into a train run's folder)" if what == "evaluate" else "")
        raise RunDirInUse(f"{key}={value} already holds {kind} ({shown}): refusing to write into it{hint}; "
                          f"give a new folder")


def exit_if_output_dirs_used(argv: list[str], what: str) -> None:
    """:func:`refuse_used_output_dirs` for a script's ``__main__``: the message on stderr, exit 2.
    Skipped in the helper processes of a distributed run (``RANK`` / ``LOCAL_RANK`` not 0): Lightning
    starts them on the folder that rank 0 has just claimed."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)) or 0) != 0:
        return
    try:
        refuse_used_output_dirs(argv, what)
    except RunDirInUse as e:
        print(f"{what}.py: {e}", file=sys.stderr)
        raise SystemExit(2) from None


class RunTerminated(SystemExit):
    """Raised by the SIGTERM handler (exit status 143)."""

    def __init__(self) -> None:
        super().__init__(EXIT_SIGTERM)


def _raise_terminated(signum: int, frame: object) -> None:
    raise RunTerminated()


def is_termination(exc: BaseException) -> bool:
    """SIGTERM as seen by our handler or by Lightning's training loop."""
    if isinstance(exc, RunTerminated):
        return True
    try:
        from pytorch_lightning.utilities.exceptions import SIGTERMException
    except ImportError:  # pragma: no cover - Lightning is a dependency
        return False
    return isinstance(exc, SIGTERMException)


@contextmanager
def terminated_exits_nonzero(what: str) -> Iterator[None]:
    """Within the block, SIGTERM stops the run with ``SystemExit(143)`` and an error log line (the
    run is left unfinished: no ``metrics.json``). The previous handler is restored afterwards."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    if main_thread:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except BaseException as exc:
        if is_termination(exc):
            log.error("%s: terminated by SIGTERM; the run is unfinished (no %s), exiting with status %d",
                      what, FINISHED_MARKER, EXIT_SIGTERM)
            raise SystemExit(EXIT_SIGTERM) from exc
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
