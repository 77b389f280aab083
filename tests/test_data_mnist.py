"""Sequential / permuted MNIST on tiny IDX files written here; the IDX reader; missing files."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
import torch

from grubench.config import build
from grubench.data import mnist
from grubench.data.mnist import SequentialMNISTDataModule, read_idx
from grubench.errors import ConfigError
from tests.cli import main_command
from tests.conftest import compose_config


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """The IDX encoding, written out by hand: 0, 0, type code, ndim, big-endian sizes, values."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(folder, n_train=12, n_test=6, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array, 0x08)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_plain_and_gzipped(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    floats = np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)
    ints = np.array([-5, 70000, 3], dtype=np.int32)
    for name, array, code in (("images", images, 0x08), ("floats", floats, 0x0D), ("ints", ints, 0x0C)):
        data = idx_bytes(array, code)
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if gz else data)
        read = read_idx(path)
        assert read.shape == array.shape and np.array_equal(read, array)


def test_read_idx_rejects_a_short_or_foreign_file(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(np.zeros((4, 5), dtype=np.uint8), 0x08)[:-3])
    with pytest.raises(ValueError, match="header says"):
        read_idx(short)
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(foreign)


@pytest.mark.parametrize("gz", [True, False])
def test_sequential_mnist_shapes_and_splits(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    pixels = SequentialMNISTDataModule(data_dir=str(tmp_path), val_size=4)
    pixels.setup()
    assert pixels.split_sizes() == {"train": 8, "val": 4, "test": 6}
    x, y = pixels.splits["train"]
    assert x.shape == (8, 784, 1) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    images = arrays["train-images-idx3-ubyte"]
    assert torch.allclose(x[3, :, 0], torch.tensor(images[3].reshape(-1) / 255.0, dtype=torch.float32))
    assert torch.equal(pixels.splits["val"][1], torch.tensor(arrays["train-labels-idx1-ubyte"][8:], dtype=torch.long))
    assert torch.equal(pixels.splits["test"][1], torch.tensor(arrays["t10k-labels-idx1-ubyte"], dtype=torch.long))
    assert pixels.spec.name == "smnist" and pixels.spec.seq_len == 784 and pixels.spec.input_size == 1

    rows = SequentialMNISTDataModule(data_dir=str(tmp_path), steps="rows", val_size=4, limit=2)
    rows.setup()
    assert rows.splits["test"][0].shape == (2, 28, 28) and rows.spec.input_size == 28
    assert torch.equal(rows.splits["test"][0].reshape(2, 784), pixels.splits["test"][0][:2, :, 0])


def test_permuted_mnist_applies_one_fixed_permutation(tmp_path):
    write_mnist(tmp_path)
    plain = SequentialMNISTDataModule(data_dir=str(tmp_path), val_size=4)
    first = SequentialMNISTDataModule(data_dir=str(tmp_path), permute=True, permutation_seed=3, val_size=4)
    again = SequentialMNISTDataModule(data_dir=str(tmp_path), permute=True, permutation_seed=3, val_size=4, seed=9)
    other = SequentialMNISTDataModule(data_dir=str(tmp_path), permute=True, permutation_seed=4, val_size=4)
    for datamodule in (plain, first, again, other):
        datamodule.setup()
    assert first.spec.name == "psmnist"
    order = first.permutation()
    assert sorted(order.tolist()) == list(range(784))
    for split in ("train", "val", "test"):
        assert torch.equal(first.splits[split][0][:, :, 0], plain.splits[split][0][:, order, 0])
        assert torch.equal(first.splits[split][0], again.splits[split][0])
        assert not torch.equal(first.splits[split][0], other.splits[split][0])


def test_missing_files_name_the_files_and_the_folder(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")  # present; the three others are not
    with pytest.raises(ValueError) as error:
        SequentialMNISTDataModule(data_dir=str(tmp_path))
    message = str(error.value)
    assert str(tmp_path) in message and "\n" not in message
    assert "train-labels-idx1-ubyte" in message and "t10k-images-idx3-ubyte" in message
    assert "train-images-idx3-ubyte," not in message and "download=true" in message

    cfg = compose_config(["+model=gru", "dataset=psmnist", f"dataset.data_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="MNIST files missing"):
        build(cfg.dataset, "dataset")


def test_missing_files_stop_the_command_with_one_line(tmp_path):
    result = main_command(["+model=gru", "dataset=smnist", f"dataset.data_dir={tmp_path / 'nowhere'}",
                           f"tracking.uri={tmp_path / 'mlflow.db'}", f"hydra.run.dir={tmp_path / 'out'}"], tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "MNIST files missing" in lines[0] and str(tmp_path / "nowhere") in lines[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "out").exists()


def test_download_checks_the_md5_and_leaves_nothing_behind(tmp_path, monkeypatch):
    requested = []

    def fake_urlopen(url, timeout):
        requested.append(url)
        return io.BytesIO(b"not the real file")

    monkeypatch.setattr(mnist.urllib.request, "urlopen", fake_urlopen)
    datamodule = SequentialMNISTDataModule(data_dir=str(tmp_path / "mnist"), download=True)  # no error yet
    with pytest.raises(OSError, match="MD5"):
        datamodule.setup()
    assert len(requested) == len(mnist.MIRRORS) and requested[0].endswith("train-images-idx3-ubyte.gz")
    assert list((tmp_path / "mnist").iterdir()) == []
