"""A sweep that sums itself up: the Hydra callback at the end of every ``train.py -m`` run.

Registered in ``conf/train.yaml`` (``hydra.callbacks.sweep_summary``). When all jobs of a multirun
have returned, :class:`SweepSummary` prints the report table (:mod:`graphrecall.report`: mean ± std
over seeds, paired differences against the first group) and the sweep's path, writes
``<sweep>/results.md`` with the bar plot ``<sweep>/results.png`` beside it, and points the link
``<parent of the sweep>/latest`` (``multirun/train/latest``) at the sweep.

A summary that fails (an unreadable run file, say) is logged as one error line with the command
that reproduces it; it never changes the sweep's own outcome or exit status. Hydra calls no
``on_multirun_end`` when a job failed: such a sweep ends with that job's error, as before.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("graphrecall.sweep_summary")

LATEST = "latest"


def summarise_sweep(sweep: Path, out_name: str = "results.md") -> str:
    """Write ``<sweep>/<out_name>`` and its plot (same name, ``.png``), print the table and the paths.

    Returns:
        The markdown written.
    """
    from graphrecall import report

    out = sweep / out_name
    result = report.build_report([sweep])
    text = report.write_outputs(result, out, out.with_suffix(".png"), plot_required=False)
    print(f"\n{text}\nsweep: {sweep}\nresults: {out}", flush=True)
    return text


def point_latest_at(sweep: Path, name: str = LATEST) -> Path | None:
    """Make ``<sweep parent>/<name>`` a relative symbolic link to ``sweep`` (replaced atomically).

    Returns:
        The link, or None when ``<name>`` is a real file or folder there (left untouched, logged).
    """
    link = sweep.parent / name
    if sweep.name == name:
        log.warning("the sweep folder is itself named '%s': no '%s' link made", name, name)
        return None
    if link.exists() and not link.is_symlink():
        log.warning("%s is a real file or folder, not a link: left as it is (no '%s' link to %s)", link, name, sweep)
        return None
    tmp = sweep.parent / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(sweep.name, target_is_directory=True)
    os.replace(tmp, link)
    return link


class SweepSummary(Callback):
    """Hydra callback: the report of the sweep and the ``latest`` link (see the module docstring).

    Args:
        out_name: the markdown file written into the sweep folder.
        latest: the name of the link beside the sweep folders (null: no link).
    """

    def __init__(self, out_name: str = "results.md", latest: str | None = LATEST) -> None:
        self.out_name = out_name
        self.latest = latest

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep = Path(str(config.hydra.sweep.dir)).absolute()
        except Exception as e:  # noqa: BLE001 - the sweep's result stands whatever happens here
            log.error("sweep summary skipped: cannot resolve hydra.sweep.dir (%s: %s)", type(e).__name__, e)
            return
        try:
            summarise_sweep(sweep, self.out_name)
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            log.error("sweep summary of %s failed (%s: %s); the runs are unaffected; retry with "
                      "`python -m graphrecall.report %s`", sweep, type(e).__name__, first, sweep)
        if self.latest and sweep.is_dir():
            try:
                link = point_latest_at(sweep, self.latest)
                if link is not None:
                    print(f"latest: {link} -> {sweep.name}", flush=True)
            except OSError as e:
                log.error("could not point %s at %s (%s)", sweep.parent / self.latest, sweep, e)
