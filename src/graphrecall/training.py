"""The training harness every Lightning-trained model shares: data order, loggers, and one fit
with model selection on the validation metric (checkpoint of the best epoch, early stopping,
resume)."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset

from graphrecall.checkpoints import check_weights_fit, load_checkpoint_file

VAL_METRIC = "val/recall@50"


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch from ``seed + epoch``: a resumed run sees the same order."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


class PairDataset(TensorDataset):
    """``TensorDataset`` that gathers a whole batch with one index per tensor (``__getitems__``).

    The plain ``TensorDataset`` + ``default_collate`` path indexes every pair separately and stacks
    them (~8 ms per 1024-pair batch on one core, 20-30% of a small-graph step); this yields the same
    batches. Use it with ``collate_fn=keep_batch``: the batch comes back already stacked.
    """

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


def keep_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``collate_fn`` for :class:`PairDataset` (module-level, so that worker processes can pickle it)."""
    return batch


def make_logger(logger_cfg: dict[str, Any], run_dir: Path, run_config: dict[str, Any] | None) -> list:
    """CSV always; Weights & Biases when ``logger.name=wandb`` (offline unless an API key is set), into
    the job's W&B run when train.py started one (one run per job, with the fit's curves)."""
    from pytorch_lightning.loggers import CSVLogger

    loggers: list = [CSVLogger(str(run_dir), name="csv", version="")]
    if logger_cfg.get("name") == "wandb":
        from graphrecall.tracking import wandb_logger

        wandb = wandb_logger(logger_cfg, run_dir, run_config)  # None with logger.mode=disabled
        if wandb is not None:
            loggers.append(wandb)
    return loggers


class RankingValidationModule(pl.LightningModule):
    """Base of modules whose validation is one ranking over all contents per epoch.

    Subclasses implement :meth:`validation_metrics` (e.g. serve the validation users from the
    current vectors); this logs ``val/<metric>`` and the running best ``val/recall@50_best``, which
    checkpoints keep, so a resumed run continues the same record.
    """

    def __init__(self) -> None:
        super().__init__()
        self.best = float("-inf")

    def validation_metrics(self) -> dict[str, float] | None:
        """``{"recall@50": ..., ...}`` of the current model, or None when no evaluator is attached."""
        raise NotImplementedError

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Validation is a ranking over all contents, done once in :meth:`on_validation_epoch_end`."""

    def on_validation_epoch_end(self) -> None:
        metrics = self.validation_metrics()
        if metrics is None:
            return
        if not self.trainer.sanity_checking:
            self.best = max(self.best, metrics["recall@50"])
        for k, v in metrics.items():
            self.log(f"val/{k}", v, prog_bar=k == "recall@50", sync_dist=True)
        self.log(f"{VAL_METRIC}_best", max(self.best, metrics["recall@50"]), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["best_val_recall@50"] = self.best

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best = checkpoint.get("best_val_recall@50", float("-inf"))


class EpochLog(pl.Callback):
    """One INFO line per epoch through the ``graphrecall.train`` logger, for fits without a progress
    bar (``trainer.enable_progress_bar=false``, every recipe):
    ``epoch 3/20: train/loss 0.412, val/recall@50 0.2931 (best 0.2950 @ epoch 2), 12.3 s``.

    Epochs count from 1 here (checkpoint names count from 0: ``best-epoch1`` is epoch 2). The best
    is the highest ``monitor`` of the epochs this fit validated (ties keep the first, as checkpointing
    does); the seconds run from the start of the epoch's training to the end of its validation.
    Values missing in an epoch (no validation that epoch, a model that logs no ``train/loss``) are
    left out of its line. The models log their epoch metrics in their own ``on_train_epoch_end``,
    which Lightning calls after the callbacks' hook: so an epoch's line is written when the next
    epoch starts, or when the fit ends.
    """

    def __init__(self, monitor: str = VAL_METRIC, loss: str = "train/loss",
                 logger: logging.Logger | None = None) -> None:
        self.monitor, self.loss = monitor, loss
        self.out = logger or logging.getLogger("graphrecall.train")
        self.best: tuple[float, int] | None = None  # (value, epoch from 1)
        self._start = time.perf_counter()
        self._validated = False
        self._pending: tuple[int, float, bool] | None = None  # (epoch from 1, seconds, validated) not yet written

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)
        self._start, self._validated = time.perf_counter(), False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending = (trainer.current_epoch + 1, time.perf_counter() - self._start, self._validated)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)

    def _write(self, trainer: pl.Trainer) -> None:
        if self._pending is not None and trainer.is_global_zero:
            epoch, seconds, validated = self._pending
            self.out.info(self.line(epoch, trainer.max_epochs, trainer.callback_metrics, seconds, validated))
        self._pending = None

    def line(self, epoch: int, max_epochs: int | None, metrics: dict[str, Any], seconds: float,
             validated: bool = True) -> str:
        """The epoch's line from Lightning's ``callback_metrics`` (updates the best)."""
        parts = []
        if self.loss in metrics:
            parts.append(f"{self.loss} {float(metrics[self.loss]):.4g}")
        value = float(metrics[self.monitor]) if validated and self.monitor in metrics else None
        if value is not None and value == value:  # NaN never becomes the best
            if self.best is None or value > self.best[0]:
                self.best = (value, epoch)
            parts.append(f"{self.monitor} {value:.4f} (best {self.best[0]:.4f} @ epoch {self.best[1]})")
        total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
        return f"epoch {epoch}{total}: " + ", ".join([*parts, f"{seconds:.1f} s"])


def epoch_log_callbacks(trainer_cfg: dict[str, Any]) -> list[pl.Callback]:
    """``[EpochLog()]`` when the trainer shows no progress bar, else ``[]``."""
    return [] if trainer_cfg.get("enable_progress_bar", True) else [EpochLog()]


def resumable_checkpoint_callback(**kwargs: Any) -> Any:
    """A ``ModelCheckpoint`` that, when a run resumes from another run's checkpoint, carries the
    record of the best epoch so far into *its own* folder: the best checkpoint file is copied into
    ``dirpath`` and the restored paths point there. The old run's folder is only read."""
    import shutil

    from pytorch_lightning.callbacks import ModelCheckpoint

    class _ResumableCheckpoint(ModelCheckpoint):
        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            old_dir = state_dict.get("dirpath")
            if old_dir is None or self.dirpath is None or Path(old_dir).resolve() == Path(self.dirpath).resolve():
                return super().load_state_dict(state_dict)
            state = dict(state_dict)
            Path(self.dirpath).mkdir(parents=True, exist_ok=True)
            moved: dict[str, str] = {}
            for old in {state.get("best_model_path"), *dict(state.get("best_k_models") or {})}:
                if old and Path(old).is_file():
                    new = str(Path(self.dirpath) / Path(old).name)
                    shutil.copy2(old, new)
                    moved[old] = new
            state["best_model_path"] = moved.get(state.get("best_model_path"), "")
            state["best_k_models"] = {moved[k]: v for k, v in dict(state.get("best_k_models") or {}).items()
                                      if k in moved}
            state["kth_best_model_path"] = moved.get(state.get("kth_best_model_path"), "")
            state["last_model_path"] = ""  # this run writes its own last.ckpt
            state["dirpath"] = self.dirpath
            if not state["best_model_path"]:
                state["best_model_score"] = None
            super().load_state_dict(state)

    return _ResumableCheckpoint(**kwargs)


def fit_with_selection(
    module: pl.LightningModule,
    train_loader: DataLoader,
    trainer_cfg: dict[str, Any],
    logger_cfg: dict[str, Any],
    run_dir: Path,
    run_config: dict[str, Any] | None = None,
    resume_from: str | None = None,
    extra_callbacks: list | None = None,
) -> dict[str, Any]:
    """Train ``module``; keep the checkpoint of the best ``val/recall@50`` and load its weights.

    Validation is one ranking over all contents per epoch, done by the module in
    ``on_validation_epoch_end``; the validation loader only triggers it.

    Args:
        trainer_cfg: Lightning ``Trainer`` arguments plus ``early_stopping_patience`` (0: off).
        logger_cfg: the ``logger`` config group (see :func:`make_logger`).
        run_dir: checkpoints go to ``<run_dir>/checkpoints``, also when resuming (the best checkpoint so
            far is copied there from ``resume_from``'s folder, which is left untouched).
        extra_callbacks: e.g. an Optuna pruning callback.

    Returns:
        ``train_seconds, epochs, epoch_seconds, best_val_recall@50, best_checkpoint``.
    """
    from pytorch_lightning.callbacks import EarlyStopping

    cfg = dict(trainer_cfg)
    patience = cfg.pop("early_stopping_patience", 3)
    ckpt_dir = Path(run_dir) / "checkpoints"  # resuming too: never write into the old run's folder
    ckpt = resumable_checkpoint_callback(dirpath=str(ckpt_dir), filename="best-epoch{epoch}", monitor=VAL_METRIC,
                                         mode="max", save_last=True, auto_insert_metric_name=False)
    callbacks: list = [ckpt]
    if patience:
        callbacks.append(EarlyStopping(monitor=VAL_METRIC, mode="max", patience=int(patience)))
    callbacks.extend(extra_callbacks or [])
    callbacks.extend(epoch_log_callbacks(cfg))
    trainer = pl.Trainer(default_root_dir=str(run_dir), callbacks=callbacks,
                         logger=make_logger(logger_cfg, Path(run_dir), run_config), **cfg)
    val_loader = DataLoader(TensorDataset(torch.zeros(1)), batch_size=1)
    start = time.perf_counter()
    if resume_from:
        # refuses a crafted or foreign file, and weights of another architecture, with one clear line
        check_weights_fit(load_checkpoint_file(resume_from), module, resume_from)
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from, weights_only=True)
    seconds = time.perf_counter() - start
    best = ckpt.best_model_path or None
    if best:
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    epochs = trainer.current_epoch
    # the selected epoch (0-based) from the best checkpoint's name ("best-epochN.ckpt", no "=": the
    # name goes on a Hydra command line as it is; older runs wrote "best-epoch=N.ckpt"); a refit
    # trains best_epoch + 1 epochs
    match = re.search(r"epoch=?(\d+)", Path(best).name) if best else None
    best_epoch = int(match.group(1)) if match else max(epochs - 1, 0)
    return {"train_seconds": seconds, "epochs": epochs, "epoch_seconds": seconds / max(epochs, 1),
            "best_val_recall@50": float(ckpt.best_model_score or 0.0), "best_epoch": best_epoch,
            "best_checkpoint": best}


def check_refit_epochs(refit_epochs: Any, refit: bool) -> int | None:
    """``model.refit_epochs``: None, or a whole number of epochs >= 1 for the refit (which it needs).

    Raises:
        ValueError: naming ``model.refit_epochs`` and what was expected.
    """
    if refit_epochs is None:
        return None
    if isinstance(refit_epochs, bool) or not isinstance(refit_epochs, int) or refit_epochs < 1:
        raise ValueError(f"model.refit_epochs must be null or a whole number >= 1, got {refit_epochs!r}")
    if not refit:
        raise ValueError(f"model.refit_epochs={refit_epochs} sets the refit's epoch count, but model.refit is false: "
                         "set model.refit=true (or leave model.refit_epochs null)")
    return int(refit_epochs)


def fit_fixed_epochs(
    module: pl.LightningModule,
    train_loader: DataLoader,
    trainer_cfg: dict[str, Any],
    logger_cfg: dict[str, Any],
    run_dir: Path,
    epochs: int,
    run_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``module`` for exactly ``epochs`` epochs, without validation (the refit on the test
    fold's window once validation has chosen the epoch count); the last weights are kept and
    checkpointed as ``<run_dir>/checkpoints/last.ckpt``.

    Returns:
        ``train_seconds, epochs, epoch_seconds``.
    """
    from pytorch_lightning.callbacks import ModelCheckpoint

    if epochs < 1:
        raise ValueError(f"a refit needs at least one epoch, got {epochs}")
    cfg = {k: v for k, v in trainer_cfg.items() if k not in ("early_stopping_patience", "check_val_every_n_epoch",
                                                            "num_sanity_val_steps", "min_epochs")}
    cfg.update(max_epochs=int(epochs), limit_val_batches=0, num_sanity_val_steps=0)
    ckpt = ModelCheckpoint(dirpath=str(Path(run_dir) / "checkpoints"), save_last=True, save_top_k=0)
    trainer = pl.Trainer(default_root_dir=str(run_dir), callbacks=[ckpt, *epoch_log_callbacks(cfg)],
                         logger=make_logger(logger_cfg, Path(run_dir), run_config), **cfg)
    start = time.perf_counter()
    trainer.fit(module, train_loader)
    seconds = time.perf_counter() - start
    return {"train_seconds": seconds, "epochs": trainer.current_epoch, "epoch_seconds": seconds / max(epochs, 1)}
