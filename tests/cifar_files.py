"""Small CIFAR-10 files in the official on-disk form, for the data tests.

Written opcode by opcode the way Python 2's cPickle (protocol 2) wrote the release: a memo
entry after every dict, list, string and global, ints as 1, 2 or 4 bytes, and 8-bit
strings for keys, file names and the pixel bytes. Independent of the package's own writer,
so a test reading these files checks the reader against the format, not against itself.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_FILES = [f"data_batch_{number}" for number in range(1, 6)]


class Py2Pickle:
    """Appends protocol-2 opcodes to a buffer, memoising as cPickle does."""

    def __init__(self) -> None:
        self.buffer = bytearray(b"\x80\x02")
        self._memo_size = 0

    def _memoise(self) -> None:
        self._memo_size += 1
        if self._memo_size < 256:
            self.buffer += b"q" + bytes([self._memo_size])
        else:
            self.buffer += b"r" + struct.pack("<I", self._memo_size)

    def string(self, raw: bytes) -> None:
        if len(raw) < 256:
            self.buffer += b"U" + bytes([len(raw)]) + raw
        else:
            self.buffer += b"T" + struct.pack("<i", len(raw)) + raw
        self._memoise()

    def integer(self, value: int) -> None:
        if 0 <= value < 256:
            self.buffer += b"K" + bytes([value])
        elif 0 <= value < 65536:
            self.buffer += b"M" + struct.pack("<H", value)
        else:
            self.buffer += b"J" + struct.pack("<i", value)

    def global_name(self, module: str, name: str) -> None:
        self.buffer += b"c" + f"{module}\n{name}\n".encode()
        self._memoise()

    def _list(self, items: list, write_item) -> None:
        self.buffer += b"]"
        self._memoise()
        self.buffer += b"("
        for item in items:
            write_item(item)
        self.buffer += b"e"

    def string_list(self, items: list[bytes]) -> None:
        self._list(items, self.string)

    def int_list(self, items: list[int]) -> None:
        self._list(items, self.integer)

    def uint8_matrix(self, matrix: np.ndarray) -> None:
        """numpy 1.x's array pickle: _reconstruct(ndarray, (0,), 'b'), then BUILD (1, shape, dtype, False, bytes)."""
        self.global_name("numpy.core.multiarray", "_reconstruct")
        self.global_name("numpy", "ndarray")
        self.integer(0)
        self.buffer += b"\x85"
        self.string(b"b")
        self.buffer += b"\x87R"
        self._memoise()
        self.buffer += b"("
        self.integer(1)
        self.integer(matrix.shape[0])
        self.integer(matrix.shape[1])
        self.buffer += b"\x86"
        self.global_name("numpy", "dtype")
        self.string(b"u1")
        self.integer(0)
        self.integer(1)
        self.buffer += b"\x87R"
        self._memoise()
        self.buffer += b"("
        self.integer(3)
        self.string(b"|")
        self.buffer += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
        self.integer(0)
        self.buffer += b"tb\x89"
        self.string(np.ascontiguousarray(matrix).tobytes())
        self.buffer += b"tb"

    def begin_dict(self) -> None:
        self.buffer += b"}"
        self._memoise()
        self.buffer += b"("

    def end_dict(self) -> bytes:
        self.buffer += b"u."
        return bytes(self.buffer)


def batch_bytes(images_hwc: np.ndarray, labels: list[int], batch_label: str) -> bytes:
    """One batch file's bytes from uint8 images N x 32 x 32 x 3 (the layout of a decoded PNG)."""
    planes = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), 3072)
    pickle = Py2Pickle()
    pickle.begin_dict()
    pickle.string(b"data")
    pickle.uint8_matrix(planes)
    pickle.string(b"labels")
    pickle.int_list([int(label) for label in labels])
    pickle.string(b"batch_label")
    pickle.string(batch_label.encode())
    pickle.string(b"filenames")
    pickle.string_list([f"image_{index}.png".encode() for index in range(len(labels))])
    return pickle.end_dict()


def meta_bytes(images_per_batch: int) -> bytes:
    pickle = Py2Pickle()
    pickle.begin_dict()
    pickle.string(b"num_cases_per_batch")
    pickle.integer(images_per_batch)
    pickle.string(b"label_names")
    pickle.string_list([name.encode() for name in CLASS_NAMES])
    pickle.string(b"num_vis")
    pickle.integer(3072)
    return pickle.end_dict()


def write_release(folder: Path, train_per_batch: int = 12, test_count: int = 20, seed: int = 0) -> dict:
    """A complete small release in `folder`; returns its images (N x 32 x 32 x 3) and labels."""
    rng = np.random.RandomState(seed)
    train_images = rng.randint(0, 256, (5 * train_per_batch, 32, 32, 3)).astype(np.uint8)
    train_labels = rng.randint(0, 10, 5 * train_per_batch)
    test_images = rng.randint(0, 256, (test_count, 32, 32, 3)).astype(np.uint8)
    test_labels = rng.randint(0, 10, test_count)
    folder.mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(TRAIN_FILES):
        part = slice(number * train_per_batch, (number + 1) * train_per_batch)
        (folder / name).write_bytes(
            batch_bytes(train_images[part], list(train_labels[part]), f"training batch {number + 1} of 5")
        )
    (folder / "test_batch").write_bytes(batch_bytes(test_images, list(test_labels), "testing batch 1 of 1"))
    (folder / "batches.meta").write_bytes(meta_bytes(train_per_batch))
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
