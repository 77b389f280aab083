"""Each use of another library's internals (grubench.internals) against the installed library:
an upgrade that changes one fails here, naming the library and its version."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from grubench import internals


def changed(library: str, what: str) -> str:
    return f"{library} {version(library)} changed {what}: grubench.internals relies on it; update the adapter"


class CaptureEpochStart(pl.Callback):
    """Checkpoints saved in on_train_epoch_start, as grubench's ResumePoint saves them."""

    def __init__(self, folder: Path):
        self.folder, self.seen = folder, []

    def on_train_epoch_start(self, trainer, pl_module):
        path = self.folder / f"epoch{trainer.current_epoch}.ckpt"
        trainer.save_checkpoint(path, weights_only=False)
        self.seen.append(torch.load(path, weights_only=False))


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_counts_an_epoch_ready_just_before_on_train_epoch_start(tmp_path):
    capture = CaptureEpochStart(tmp_path)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = pl.Trainer(max_epochs=2, callbacks=[capture], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Tiny(), data)
    second = capture.seen[1]
    try:
        progress = second["loops"]["fit_loop"]["epoch_progress"]
        counts = [(progress[k]["ready"], progress[k]["completed"]) for k in ("total", "current")]
    except (KeyError, TypeError) as error:
        pytest.fail(changed("pytorch-lightning", f"the checkpoint layout (no {error})"))
    assert counts == [(2, 1), (2, 1)], changed("pytorch-lightning", f"when an epoch counts ready: {counts}")
    internals.rewind_epoch_start(second)
    assert second["loops"]["fit_loop"]["epoch_progress"]["total"]["ready"] == 1


def test_lightning_names_a_bad_trainer_argument_a_misconfiguration():
    with pytest.raises(Exception) as raised:
        pl.Trainer(gradient_clip_algorithm="no-such-algorithm", logger=False)
    assert internals.is_lightning_misconfiguration(raised.value), \
        changed("pytorch-lightning", f"its exception for a bad Trainer argument ({type(raised.value)})")
    assert not internals.is_lightning_misconfiguration(ValueError("not Lightning's"))


def test_the_mlflow_ui_reads_the_tags_and_address_grubench_writes():
    import mlflow

    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    scripts = [p.read_text(errors="ignore") for p in bundle.glob("*.js")]
    assert scripts, changed("mlflow", f"where its UI lives (no {bundle})")
    for name in ("SHARED_VIEW_TAG", "VIEW_PARAMETER", "EXPERIMENT_KIND_TAG", "MODEL_TRAINING_KIND"):
        value = getattr(internals, name)
        assert any(value in text for text in scripts), changed("mlflow", f"its UI: it no longer reads {value!r} ({name})")
    key, value = internals.RUNS_TABLE_PARAMETERS.split("=")
    assert any(key in text and value in text for text in scripts), changed("mlflow", "its runs table's address")
