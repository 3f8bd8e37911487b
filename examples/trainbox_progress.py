"""Live progress for trainbox from an unmodified Hugging Face or Lightning
training script: one import and one line.

    # Hugging Face Trainer
    from trainbox_progress import TrainboxCallback
    trainer = Trainer(..., callbacks=[TrainboxCallback()])

    # PyTorch Lightning
    from trainbox_progress import TrainboxLightningCallback
    trainer = L.Trainer(..., callbacks=[TrainboxLightningCallback()])

At every logging step each writes the job's `progress.json` (replaced
atomically: a reader never sees half a file) and appends a line to
`metrics.jsonl`, where trainbox reads progress and the loss history.
Outside trainbox (no TRAINBOX_PROGRESS_FILE) they do nothing.

This file needs neither trainbox nor transformers nor lightning to import:
copy it next to the training script. The callbacks are duck-typed: they
subclass the framework's callback class when it is installed (so the
framework accepts them) and read only plain attributes of the objects
they are given.
"""

import json
import math
import os
import tempfile
import time

__all__ = ["ProgressWriter", "TrainboxCallback", "TrainboxLightningCallback"]


def _number(value):
    """A finite float from a number or a 0-d tensor; None otherwise."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class ProgressWriter:
    """Writes trainbox's progress files for one job.

    `progress_file` defaults to $TRAINBOX_PROGRESS_FILE (set by trainbox for
    the trainers it starts); `metrics.jsonl` goes next to it.
    """

    def __init__(self, progress_file=None):
        self.progress_file = progress_file or os.environ.get("TRAINBOX_PROGRESS_FILE")
        self.history_file = (
            os.path.join(os.path.dirname(self.progress_file), "metrics.jsonl")
            if self.progress_file
            else None
        )

    @property
    def enabled(self):
        return bool(self.progress_file)

    def write(self, step, total_steps=None, epoch=None, metrics=None):
        """Records one logging step: `metrics` maps names to numbers; `loss`
        and `learning_rate` (or `lr`) become fields of their own."""
        if not self.enabled:
            return
        numbers = {}
        for name, value in (metrics or {}).items():
            value = _number(value)
            if value is not None:
                numbers[str(name)] = value
        sample = {"step": int(step)}
        if total_steps:
            sample["total_steps"] = int(total_steps)
        if _number(epoch) is not None:
            sample["epoch"] = _number(epoch)
        for field, names in (("loss", ("loss", "train_loss")), ("learning_rate", ("learning_rate", "lr"))):
            for name in names:
                if name in numbers:
                    sample[field] = numbers.pop(name)
                    break
        if "learning_rate" not in sample:
            # Lightning's LearningRateMonitor logs `lr-<optimizer>`.
            monitored = sorted(n for n in numbers if n.startswith("lr-"))
            if monitored:
                sample["learning_rate"] = numbers.pop(monitored[0])
        if numbers:
            sample["metrics"] = numbers
        sample["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = json.dumps(sample, separators=(",", ":"))
        with open(self.history_file, "a", encoding="utf-8") as history:
            history.write(line + "\n")
        self._replace(self.progress_file, line)

    @staticmethod
    def _replace(path, text):
        directory = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


try:  # Subclass the real base classes where the frameworks are installed.
    from transformers import TrainerCallback as _HfBase
except ImportError:  # pragma: no cover - depends on the environment
    _HfBase = object

try:
    from lightning.pytorch.callbacks import Callback as _LightningBase
except ImportError:  # pragma: no cover
    try:
        from pytorch_lightning.callbacks import Callback as _LightningBase
    except ImportError:
        _LightningBase = object


class TrainboxCallback(_HfBase):
    """Hugging Face `TrainerCallback`: progress at every `on_log` (every
    `logging_steps`), from the main process only."""

    def __init__(self, progress_file=None):
        super().__init__()
        self.writer = ProgressWriter(progress_file)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not getattr(state, "is_world_process_zero", True):
            return
        self.writer.write(
            step=getattr(state, "global_step", 0),
            total_steps=getattr(state, "max_steps", None),
            epoch=getattr(state, "epoch", None),
            metrics=logs,
        )


class TrainboxLightningCallback(_LightningBase):
    """Lightning `Callback`: progress every `log_every_n_steps` training
    batches and after each validation, from global rank 0 only."""

    def __init__(self, progress_file=None, every_n_steps=None):
        super().__init__()
        self.writer = ProgressWriter(progress_file)
        self.every_n_steps = every_n_steps

    def _write(self, trainer):
        if getattr(trainer, "global_rank", 0) != 0:
            return
        total = getattr(trainer, "max_steps", None)
        if total is None or total < 0:
            total = getattr(trainer, "estimated_stepping_batches", None)
        try:
            total = int(total) if total is not None and math.isfinite(float(total)) else None
        except (TypeError, ValueError):
            total = None
        self.writer.write(
            step=getattr(trainer, "global_step", 0),
            total_steps=total,
            epoch=getattr(trainer, "current_epoch", None),
            metrics=dict(getattr(trainer, "callback_metrics", {}) or {}),
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        every = self.every_n_steps or getattr(trainer, "log_every_n_steps", 50) or 50
        if getattr(trainer, "global_step", 0) % every == 0:
            self._write(trainer)

    def on_validation_end(self, trainer, pl_module):
        self._write(trainer)

    def on_train_end(self, trainer, pl_module):
        self._write(trainer)
