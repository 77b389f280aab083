"""Sequential MNIST and permuted sequential MNIST, read from the standard IDX files.

The four files (LeCun et al. 1998) are looked for in `data_dir`, each plain or gzipped:

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

Nothing is downloaded unless `download=true`; then the gzipped files are fetched into `data_dir`
from the first mirror that answers and checked against their published MD5 sums.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import shutil
import struct
import urllib.request
from pathlib import Path

import numpy as np
import torch

from grubench.data.base import SequenceDataModule, cache_root
from grubench.spec import TaskSpec, require_positive

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MD5 = {  # of the gzipped files
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, plain or gzipped (told apart by the gzip magic bytes).

    Layout: two zero bytes, a type code (0x08 uint8 ... 0x0E float64), the number of dimensions
    d, then d big-endian uint32 sizes, then the values in C order, big-endian.
    """
    path = Path(path)
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else path.open("rb")) as stream:
        data = stream.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file")
    dtype, ndim = np.dtype(IDX_TYPES[data[2]]), data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    values = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if values.size != math.prod(shape):
        raise ValueError(f"{path}: header says {shape}, file holds {values.size} values")
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def find_file(data_dir: Path, name: str) -> Path | None:
    """`data_dir/name` or `data_dir/name.gz`, whichever exists first."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(data_dir: Path) -> list[str]:
    return [name for name in FILES.values() if find_file(data_dir, name) is None]


def download(data_dir: Path) -> None:
    """Fetch the missing gzipped files into `data_dir` and check their MD5 sums."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in missing_files(data_dir):
        target = data_dir / f"{name}.gz"
        errors = []
        for mirror in MIRRORS:
            partial = target.with_name(target.name + ".part")
            try:
                with urllib.request.urlopen(mirror + target.name, timeout=60) as response, partial.open("wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as error:
                errors.append(f"{mirror}: {error}")
                continue
            digest = hashlib.md5(partial.read_bytes()).hexdigest()
            if digest != MD5[target.name]:
                partial.unlink()
                errors.append(f"{mirror}: MD5 {digest} is not {MD5[target.name]}")
                continue
            partial.replace(target)
            break
        else:
            raise OSError(f"could not download {target.name}: {'; '.join(errors)}")


class SequentialMNISTDataModule(SequenceDataModule):
    """MNIST digits read as a sequence: `steps="pixels"` gives 784 steps of one pixel (row by
    row, Le et al. 2015), `steps="rows"` 28 steps of a 28-pixel row. With `permute`, one fixed
    permutation of the 784 pixels, drawn from `permutation_seed`, is applied to every image
    first (permuted sequential MNIST): it removes the local structure, so the model must hold
    information across hundreds of steps.

    Pixels are scaled to 0..1. The validation set is the last `val_size` images of the training
    file, so it is fixed; the test set is the 10,000 images of the test file.

    x: [N, 784, 1] or [N, 28, 28] float, y: [N] long (10 classes). Chance accuracy 0.1.

    Args:
        data_dir: folder of the IDX files; None: `cache_root()/mnist`.
        steps: "pixels" or "rows".
        permute: apply the fixed pixel permutation.
        permutation_seed: seed of that permutation.
        val_size: training images held out for validation.
        download: fetch missing files (needs a network); otherwise missing files stop the run.
    """

    def __init__(self, data_dir: str | None = None, steps: str = "pixels", permute: bool = False,
                 permutation_seed: int = 0, val_size: int = 5000, download: bool = False,
                 batch_size: int = 100, seed: int = 0, limit: int | None = None):
        super().__init__(batch_size=batch_size, seed=seed, limit=limit)
        if steps not in ("pixels", "rows"):
            raise ValueError(f"steps must be 'pixels' or 'rows', got {steps!r}")
        require_positive(val_size=val_size)
        self.data_dir = Path(data_dir).expanduser() if data_dir else cache_root() / "mnist"
        self.steps = steps
        self.permute = bool(permute)
        self.permutation_seed = permutation_seed
        self.val_size = val_size
        self.download = download
        missing = missing_files(self.data_dir)
        if missing and not download:
            raise ValueError(
                f"MNIST files missing in {self.data_dir}: {', '.join(missing)} (plain or .gz); "
                "put them there, set dataset.data_dir, or set dataset.download=true where a network is available")
        seq_len, features = (784, 1) if steps == "pixels" else (28, 28)
        self.spec = TaskSpec(
            name="psmnist" if self.permute else "smnist", input_kind="real", input_size=features,
            output="classification", num_outputs=10, seq_len=seq_len, metric="acc",
            chance={"acc": 0.1, "loss": math.log(10)},
        )

    def permutation(self) -> torch.Tensor:
        """The fixed pixel order: a permutation of 0..783 drawn from `permutation_seed`."""
        return torch.randperm(784, generator=torch.Generator().manual_seed(self.permutation_seed))

    def make_splits(self):
        if self.download:
            download(self.data_dir)
        arrays = {key: read_idx(find_file(self.data_dir, name)) for key, name in FILES.items()}
        order = self.permutation() if self.permute else None

        def tensors(images: np.ndarray, labels: np.ndarray):
            if images.shape[1:] != (28, 28) or len(images) != len(labels):
                raise ValueError(f"expected N x 28 x 28 images and N labels, got {images.shape} and {labels.shape}")
            x = torch.from_numpy(images.reshape(len(images), 784).astype(np.float32) / 255.0)
            if order is not None:
                x = x[:, order]
            return x.reshape(len(images), self.spec.seq_len, self.spec.input_size), torch.from_numpy(labels.astype(np.int64))

        train_x, train_y = tensors(arrays["train_images"], arrays["train_labels"])
        if self.val_size >= len(train_y):
            raise ValueError(f"val_size must leave training images: {self.val_size} >= {len(train_y)}")
        cut = len(train_y) - self.val_size
        return {
            "train": (train_x[:cut], train_y[:cut]),
            "val": (train_x[cut:], train_y[cut:]),
            "test": tensors(arrays["test_images"], arrays["test_labels"]),
        }
