"""Run integrity: one folder per launch, never reused for a finished run, and a run stopped by
SIGTERM exits non-zero with a log line.

* Run folders are named ``<date>_<time>_<launch id>`` (``${run_id:}`` in ``conf/*.yaml``): the launch
  id (process id + 4 random hex digits, fixed for the process) keeps two launches in the same second
  apart.
* :func:`claim_run_dir` refuses a folder that already holds a finished run (its ``metrics.json``).
* :func:`terminated_exits_nonzero` turns SIGTERM (also Lightning's ``SIGTERMException``, a
  ``SystemExit`` without a code, i.e. exit status 0) into exit status 143 (128 + SIGTERM).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
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


def claim_run_dir(out: Path) -> Path:
    """Create ``out``; refuse it when it holds a finished run (``metrics.json``)."""
    if (Path(out) / FINISHED_MARKER).exists():
        raise FileExistsError(
            f"{out} already holds a finished run ({FINISHED_MARKER}); refusing to overwrite it: "
            "give a new folder (run_dir=... or hydra.run.dir=...)"
        )
    Path(out).mkdir(parents=True, exist_ok=True)
    return Path(out)


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
