"""The callbacks of trainbox_progress.py, driven the way transformers and
Lightning drive them, with duck-typed state objects (no torch needed)."""

import json
import os
import sys
import tempfile
import types
import unittest

sys.dont_write_bytecode = True  # leave the work tree as it was
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trainbox_progress as tp  # noqa: E402


class Scalar:
    """A 0-d tensor as far as the callbacks can tell."""

    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value


class CallbackTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.progress = os.path.join(self.dir.name, "progress.json")

    def tearDown(self):
        self.dir.cleanup()

    def read(self):
        with open(self.progress, encoding="utf-8") as f:
            latest = json.load(f)
        with open(os.path.join(self.dir.name, "metrics.jsonl"), encoding="utf-8") as f:
            history = [json.loads(line) for line in f]
        return latest, history

    def test_hugging_face_on_log(self):
        callback = tp.TrainboxCallback(self.progress)
        state = types.SimpleNamespace(global_step=10, max_steps=200, epoch=0.25, is_world_process_zero=True)
        callback.on_log(None, state, None, logs={"loss": 2.5, "grad_norm": 1.5, "learning_rate": 5e-5, "epoch": 0.25})
        state.global_step = 20
        callback.on_log(None, state, None, logs={"loss": 2.25, "learning_rate": 4e-5})
        latest, history = self.read()
        self.assertEqual(latest["step"], 20)
        self.assertEqual(latest["total_steps"], 200)
        self.assertEqual(latest["loss"], 2.25)
        self.assertEqual(latest["learning_rate"], 4e-5)
        self.assertEqual([h["step"] for h in history], [10, 20])
        self.assertEqual(history[0]["metrics"], {"grad_norm": 1.5, "epoch": 0.25})
        self.assertFalse([n for n in os.listdir(self.dir.name) if n.startswith(".progress-")], "no temporary left")

    def test_other_ranks_and_no_job_write_nothing(self):
        callback = tp.TrainboxCallback(self.progress)
        callback.on_log(None, types.SimpleNamespace(global_step=1, is_world_process_zero=False), None, logs={"loss": 1.0})
        self.assertFalse(os.path.exists(self.progress))
        os.environ.pop("TRAINBOX_PROGRESS_FILE", None)
        outside = tp.TrainboxCallback()
        outside.on_log(None, types.SimpleNamespace(global_step=1), None, logs={"loss": 1.0})
        self.assertFalse(outside.writer.enabled)

    def test_lightning_every_n_steps_and_validation(self):
        callback = tp.TrainboxLightningCallback(self.progress)
        trainer = types.SimpleNamespace(
            global_rank=0, global_step=0, max_steps=-1, estimated_stepping_batches=float("inf"),
            current_epoch=0, log_every_n_steps=5, callback_metrics={},
        )
        for step in range(1, 11):
            trainer.global_step = step
            trainer.callback_metrics = {"train_loss": Scalar(1.0 / step), "lr-AdamW": Scalar(0.001)}
            callback.on_train_batch_end(trainer, None, None, None, step - 1)
        trainer.callback_metrics = {"train_loss": Scalar(0.1), "val_loss": Scalar(0.2), "bad": Scalar(float("nan"))}
        callback.on_validation_end(trainer, None)
        latest, history = self.read()
        self.assertEqual([h["step"] for h in history], [5, 10, 10])
        self.assertNotIn("total_steps", latest, "an infinite estimate is no total")
        self.assertEqual(latest["loss"], 0.1)
        self.assertEqual(latest["metrics"], {"val_loss": 0.2})
        self.assertEqual(history[0]["learning_rate"], 0.001)
        self.assertNotIn("metrics", history[0])

    def test_progress_is_replaced_whole(self):
        writer = tp.ProgressWriter(self.progress)
        for step in range(50):
            writer.write(step, 50, metrics={"loss": 1.0})
            with open(self.progress, encoding="utf-8") as f:
                self.assertEqual(json.load(f)["step"], step)


if __name__ == "__main__":
    unittest.main()
