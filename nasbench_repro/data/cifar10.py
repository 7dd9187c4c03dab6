"""CIFAR-10 from torchvision's on-disk release, held on the run's device as uint8 tensors.

Files: `<root>/cifar-10-batches-py/` with `data_batch_1`..`data_batch_5`, `test_batch` and
`batches.meta`, Python 2 pickles of dicts: `b"data"` is a uint8 N x 3072 array (three
32 x 32 colour planes per row), `b"labels"` a list of class numbers. They are read by an
unpickler that admits nothing but numpy's array-reconstruction globals, so a data file
can never run code, and compared with the official MD5s unless the user allows other files.

Batches are augmented on the device, drawn from the run's generator, as DARTS's CIFAR
pipeline does on the host (quark0/darts cnn/utils.py): a random 32 x 32 crop of the image
padded with 4 zero pixels, a horizontal flip with probability 1/2, normalisation with the
CIFAR-10 mean and std, then (evaluation only) cutout.

Without CIFAR-10, a smoke run uses a generated stand-in in the same file format
(`synthetic-shapes`), recorded under its own name; other budgets stop with an error.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasbench_repro.atomic import atomic_open
from nasbench_repro.data import DataRequest, DataSource
from nasbench_repro.data.augment import (
    Normalize,
    batches_per_epoch,
    check_stream,
    cut_out,
    random_integers,
    random_permutation,
)
from nasbench_repro.errors import DataError, UserError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{number}" for number in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
RELEASE_FILES = (*TRAIN_FILES, TEST_FILE, META_FILE)

# The official release, as torchvision/datasets/cifar.py (CIFAR10.train_list, test_list, meta) lists it.
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # torchvision CIFAR10.url, for messages

# DARTS's CIFAR-10 normalisation and crop padding (quark0/darts cnn/utils.py, _data_transforms_cifar10).
MEAN = (0.49139968, 0.48215827, 0.44653124)
STD = (0.24703233, 0.24348505, 0.26158768)
CROP_PADDING = 4
IMAGE_SIZE = 32
PIXELS_PER_IMAGE = 3 * IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10

DOWNLOAD_TIMEOUT_SECONDS = 15  # per network operation; an offline machine fails at once on DNS

STAND_IN = "synthetic-shapes"
STAND_IN_BATCH = 1000  # images per file: 5,000 train, 1,000 test
STAND_IN_SEED = 0
SHAPES = (
    "disc",
    "square",
    "triangle",
    "plus",
    "ring",
    "diamond",
    "diagonal-cross",
    "horizontal-stripes",
    "vertical-stripes",
    "checkerboard",
)


# --- resolving: which files, official or not, or the stand-in ---------------------------------------------------


def resolve(request: DataRequest) -> DataSource:
    """CIFAR-10 under `request.root`, downloaded when missing; for the smoke budget only, a stand-in."""
    root = Path(request.root)
    folder = root / FOLDER
    missing = _missing(folder)
    if missing and request.download:
        download_problem = _download(root) or "the archive did not hold them"
        missing = _missing(folder)
        if missing:
            missing += f", and downloading it failed ({download_problem})"
    if not missing:
        return _release_source(folder, request.allow_unofficial)
    if request.budget == "smoke":
        return _stand_in_source(root, missing)
    raise DataError(
        f"CIFAR-10 not found: {missing}; put torchvision's {FOLDER}/ there (unpack {ARCHIVE_URL}) "
        f"or point --data-root at the folder that holds it"
    )


def _missing(folder: Path) -> str:
    """What is missing of a release, in words; empty when every file is there."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    absent = [name for name in RELEASE_FILES if not (folder / name).is_file()]
    return f"{folder} lacks {', '.join(absent)}" if absent else ""


def _download(root: Path) -> str | None:
    """Fetch and unpack the official archive with torchvision; None on success, else why not.

    torchvision's own download (CIFAR10's url, filename and archive MD5) is used without
    constructing the dataset class, which would unpickle the files unrestricted.
    """
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        download_and_extract_archive(CIFAR10.url, root, filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
    except Exception as error:  # network, disk and archive failures all mean "not downloadable here"
        return _one_line(error)
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return None


def _release_source(folder: Path, allow_unofficial: bool) -> DataSource:
    release = read_release(folder)
    checksums = file_checksums(folder)
    differing = [name for name in RELEASE_FILES if checksums[name] != OFFICIAL_MD5[name]]
    if differing and not allow_unofficial:
        name = differing[0]
        raise DataError(
            f"{folder / name} is not the official CIFAR-10 file (MD5 {checksums[name]}, expected "
            f"{OFFICIAL_MD5[name]}); download the release again, or pass --allow-unofficial-data to use these files"
        )
    notices = []
    if differing:
        notices.append(
            f"using CIFAR-10 files that are not the official release ({len(differing)} of "
            f"{len(RELEASE_FILES)} checksums differ) from {folder}; the record says official: false"
        )
    description = _describe(folder, release, checksums, official=not differing)
    return DataSource("cifar10", description, release.loader(), notices)


def _stand_in_source(root: Path, missing: str) -> DataSource:
    folder = root / STAND_IN / FOLDER
    if _missing(folder):
        try:
            write_stand_in(folder)
        except OSError as error:
            raise DataError(
                f"cannot write the smoke-run stand-in to {folder} ({_one_line(error)}); "
                f"make {root} writable or point --data-root elsewhere"
            ) from None
    release = read_release(folder)
    description = {
        **_describe(folder, release, file_checksums(folder), official=False),
        "stand_in": True,
        "stands_in_for": "cifar10",
        "generator": f"{__name__}.draw_shapes, RandomState({STAND_IN_SEED})",
    }
    notice = (
        f"CIFAR-10 is unavailable ({missing}): this smoke run uses the generated '{STAND_IN}' stand-in "
        f"from {folder}, recorded under that name; its numbers say nothing about CIFAR-10"
    )
    return DataSource(STAND_IN, description, release.loader(), [notice])


def _describe(folder: Path, release: CifarRelease, checksums: dict[str, str], official: bool) -> dict[str, Any]:
    return {
        "root": str(folder),
        "files": checksums,
        "official": official,
        "stand_in": False,
        "train_examples": len(release.train_labels),
        "test_examples": len(release.test_labels),
        "classes": release.classes,
    }


def file_checksums(folder: Path) -> dict[str, str]:
    return {name: _md5(folder / name) for name in RELEASE_FILES}


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- reading the pickles without running them ---------------------------------------------------------------

# The one function numpy's pickles call to rebuild an array; taken from numpy itself, since
# its module moved (numpy.core in 1.x, numpy._core in 2.x) and old files name the old one.
_reconstruct = np.empty(0).__reduce__()[0]
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, numbers, strings and numpy arrays; refuses every other global.

    A pickle runs code only through the globals it names (os.system, eval, ...), so
    admitting just the array-reconstruction ones keeps a hostile file inert.
    """

    def __init__(self, handle: Any, path: Path):
        super().__init__(handle, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ARRAY_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._path} asks to run {module}.{name}, which no CIFAR-10 file contains; "
                f"refusing to load it: delete it and download CIFAR-10 again"
            ) from None


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            return _ArrayOnlyUnpickler(handle, path).load()
    except DataError:
        raise
    except Exception as error:  # whatever a damaged file makes the unpickler raise
        raise DataError(
            f"{path} is truncated or corrupt ({_one_line(error)}); delete it and download CIFAR-10 again"
        ) from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 images N x 3 x 32 x 32, int64 labels N)."""
    entry = _unpickle(path)
    data = entry.get(b"data") if isinstance(entry, dict) else None
    labels = entry.get(b"labels") if isinstance(entry, dict) else None
    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == PIXELS_PER_IMAGE
    ):
        raise DataError(
            f"{path} is not a CIFAR-10 batch (no uint8 N x {PIXELS_PER_IMAGE} b'data' array); "
            f"delete it and download CIFAR-10 again"
        )
    try:
        label_array = np.array(labels, dtype=np.int64)
    except (TypeError, ValueError):
        label_array = None
    if (
        label_array is None
        or label_array.shape != (len(data),)
        or not ((label_array >= 0) & (label_array < NUM_CLASSES)).all()
    ):
        raise DataError(
            f"{path} is not a CIFAR-10 batch (b'labels' is not a list of {len(data)} class numbers "
            f"0-{NUM_CLASSES - 1}); delete it and download CIFAR-10 again"
        )
    return data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE), label_array


def read_class_names(path: Path) -> list[str]:
    entry = _unpickle(path)
    names = entry.get(b"label_names") if isinstance(entry, dict) else None
    if not (isinstance(names, list) and len(names) == NUM_CLASSES and all(isinstance(n, bytes) for n in names)):
        raise DataError(
            f"{path} is not CIFAR-10's batches.meta (no list of {NUM_CLASSES} b'label_names'); "
            f"delete it and download CIFAR-10 again"
        )
    return [name.decode("latin-1") for name in names]


@dataclass(frozen=True)
class CifarRelease:
    """A release read from disk, still on the host."""

    train_images: np.ndarray  # uint8 N x 3 x 32 x 32
    train_labels: np.ndarray  # int64 N
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]

    def loader(self) -> Any:
        """The `DataSource.load` callable: moves the arrays onto the run's device."""
        return lambda device, generator: CifarData(self, device, generator)


def read_release(folder: Path) -> CifarRelease:
    batches = [read_batch(folder / name) for name in TRAIN_FILES]
    test_images, test_labels = read_batch(folder / TEST_FILE)
    return CifarRelease(
        train_images=np.concatenate([images for images, _ in batches]),
        train_labels=np.concatenate([labels for _, labels in batches]),
        test_images=test_images,
        test_labels=test_labels,
        classes=read_class_names(folder / META_FILE),
    )


# --- writing the same format (for the stand-in) ---------------------------------------------------------------


def _py2_str(raw: bytes) -> bytes:
    """A Python 2 `str`, which is how the official files store keys, names and pixel bytes."""
    if len(raw) < 256:
        return pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw
    return pickle.BINSTRING + struct.pack("<i", len(raw)) + raw


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return pickle.BININT1 + bytes([value])
    return pickle.BININT + struct.pack("<i", value)


def _py2_list(encoded_items: list[bytes]) -> bytes:
    return pickle.EMPTY_LIST + pickle.MARK + b"".join(encoded_items) + pickle.APPENDS


def _py2_uint8_matrix(matrix: np.ndarray) -> bytes:
    """A 2-D uint8 array as numpy pickles one: _reconstruct(ndarray, (0,), 'b') and then its state."""
    rows, cols = matrix.shape
    dtype = (
        pickle.GLOBAL
        + b"numpy\ndtype\n"
        + _py2_str(b"u1")
        + _py2_int(0)
        + _py2_int(1)
        + pickle.TUPLE3
        + pickle.REDUCE
        + pickle.MARK
        + _py2_int(3)
        + _py2_str(b"|")
        + pickle.NONE * 3
        + _py2_int(-1)
        + _py2_int(-1)
        + _py2_int(0)
        + pickle.TUPLE
        + pickle.BUILD
    )
    return (
        pickle.GLOBAL
        + b"numpy.core.multiarray\n_reconstruct\n"
        + pickle.GLOBAL
        + b"numpy\nndarray\n"
        + _py2_int(0)
        + pickle.TUPLE1
        + _py2_str(b"b")
        + pickle.TUPLE3
        + pickle.REDUCE
        + pickle.MARK
        + _py2_int(1)
        + _py2_int(rows)
        + _py2_int(cols)
        + pickle.TUPLE2
        + dtype
        + pickle.NEWFALSE
        + _py2_str(np.ascontiguousarray(matrix).tobytes())
        + pickle.TUPLE
        + pickle.BUILD
    )


def _py2_dict_pickle(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_py2_str(key) + value for key, value in entries)
    return pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS + pickle.STOP


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, batch_label: str, class_names: list[str]) -> None:
    """Write uint8 images N x 3 x 32 x 32 and their labels as one official-format batch file."""
    entries = [
        (b"batch_label", _py2_str(batch_label.encode())),
        (b"labels", _py2_list([_py2_int(int(label)) for label in labels])),
        (b"data", _py2_uint8_matrix(images.reshape(len(images), PIXELS_PER_IMAGE))),
        (
            b"filenames",
            _py2_list(
                [_py2_str(f"{class_names[label]}_{index:05d}.png".encode()) for index, label in enumerate(labels)]
            ),
        ),
    ]
    with atomic_open(path, "wb") as handle:
        handle.write(_py2_dict_pickle(entries))


def write_meta(path: Path, class_names: list[str], images_per_batch: int) -> None:
    entries = [
        (b"num_cases_per_batch", _py2_int(images_per_batch)),
        (b"label_names", _py2_list([_py2_str(name.encode()) for name in class_names])),
        (b"num_vis", _py2_int(PIXELS_PER_IMAGE)),
    ]
    with atomic_open(path, "wb") as handle:
        handle.write(_py2_dict_pickle(entries))


# --- the stand-in: learnable shapes in CIFAR-10's format -----------------------------------------------------


def _shape_masks(u: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """Each class's mask over coordinates (u, v) scaled so that the shape spans about [-1, 1]."""
    radius = np.hypot(u, v)
    extent = np.maximum(np.abs(u), np.abs(v))
    in_square = extent <= 0.9
    column_band = np.floor((u + 0.9) * 2.5) % 2 == 0
    row_band = np.floor((v + 0.9) * 2.5) % 2 == 0
    return [
        radius <= 1,
        extent <= 0.8,
        (v <= 0.8) & (np.abs(u) <= (v + 0.9) * 0.55),
        ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)) & (extent <= 1),
        (radius >= 0.55) & (radius <= 1),
        np.abs(u) + np.abs(v) <= 1,
        (np.abs(np.abs(u) - np.abs(v)) <= 0.3) & in_square,
        in_square & row_band,
        in_square & column_band,
        in_square & (row_band == column_band),
    ]


def draw_shapes(count: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """`count` images of the ten SHAPES, balanced: random size, position, colours and pixel noise.

    Returns uint8 images N x 3 x 32 x 32 and int64 labels. Foreground and background differ
    by 0.3-0.7 in every channel, so the shape is always visible but colour says nothing of
    the class; a small CNN learns them in a few epochs.
    """
    labels = rng.permutation(np.arange(count) % len(SHAPES)).astype(np.int64)
    size = rng.uniform(6.0, 11.0, (count, 1, 1))
    centre_row = rng.uniform(size, IMAGE_SIZE - size)
    centre_col = rng.uniform(size, IMAGE_SIZE - size)
    grid = np.arange(IMAGE_SIZE) + 0.5
    v = np.broadcast_to((grid[None, :, None] - centre_row) / size, (count, IMAGE_SIZE, IMAGE_SIZE))
    u = np.broadcast_to((grid[None, None, :] - centre_col) / size, (count, IMAGE_SIZE, IMAGE_SIZE))
    mask = np.stack(_shape_masks(u, v))[labels, np.arange(count)]
    foreground = rng.uniform(0.0, 1.0, (count, 3, 1, 1))
    background = (foreground + rng.uniform(0.3, 0.7, (count, 3, 1, 1))) % 1.0
    noise = rng.normal(0.0, 0.06, (count, 3, IMAGE_SIZE, IMAGE_SIZE))
    image = np.where(mask[:, None], foreground, background) + noise
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), labels


def write_stand_in(folder: Path) -> None:
    """Generate the stand-in (deterministic: RandomState is stable across numpy versions) into `folder`."""
    rng = np.random.RandomState(STAND_IN_SEED)
    names = list(SHAPES)
    for number, name in enumerate((*TRAIN_FILES, TEST_FILE), start=1):
        images, labels = draw_shapes(STAND_IN_BATCH, rng)
        split = "testing batch 1 of 1" if name == TEST_FILE else f"training batch {number} of {len(TRAIN_FILES)}"
        write_batch(folder / name, images, labels, f"{STAND_IN} {split}", names)
    write_meta(folder / META_FILE, names, STAND_IN_BATCH)  # written last: its presence marks a complete set


# --- on the device: the dataset object the methods use --------------------------------------------------------


class CifarData:
    """CIFAR-10 (or its stand-in) as uint8 tensors on the run's device, handing out batch streams.

    Streams draw shuffling and augmentation from the run's generator only, so a seed
    reproduces every batch, and a resumed run, whose generator state the runner restores,
    sees the batches the interrupted run would have seen. `train_examples` and
    `test_examples` cap the subset (the first images, in file order); None means all.
    """

    num_classes = NUM_CLASSES
    input_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    def __init__(self, release: CifarRelease, device: torch.device, generator: torch.Generator):
        self.train_images = torch.from_numpy(release.train_images).to(device)
        self.train_labels = torch.from_numpy(release.train_labels).to(device)
        self.test_images = torch.from_numpy(release.test_images).to(device)
        self.test_labels = torch.from_numpy(release.test_labels).to(device)
        self.classes = release.classes
        self._generator = generator
        self._normalize = Normalize(MEAN, STD, self.train_images.device)

    def search_batches(
        self, train_examples: int | None, train_portion: float, batch_size: int
    ) -> tuple[AugmentedBatches, AugmentedBatches]:
        """DARTS's search split: weights train on the first `train_portion` of the subset, the architecture on the rest.

        Both streams crop and flip, without cutout, as DARTS's search does.
        """
        if not 0 < train_portion < 1:
            raise UserError(f"train_portion must lie strictly between 0 and 1, not {train_portion}")
        count = self._train_count(train_examples)
        split = math.floor(train_portion * count)  # as DARTS: int(np.floor(train_portion * num_train))
        return (
            self._augmented(0, split, batch_size, cutout_length=0),
            self._augmented(split, count, batch_size, cutout_length=0),
        )

    def validation_batches(self, train_examples: int | None, train_portion: float, batch_size: int) -> TestBatches:
        """The held-out part of the search split, in file order and unaugmented: how a candidate
        trained on the other part is scored (NAS-RL's and regularized evolution's validation set)."""
        count = self._train_count(train_examples)
        split = math.floor(train_portion * count)
        return TestBatches(self.train_images[split:count], self.train_labels[split:count], batch_size, self._normalize)

    def train_batches(self, train_examples: int | None, batch_size: int, cutout_length: int) -> AugmentedBatches:
        """Evaluation training: crop, flip and, when `cutout_length` > 0, cutout."""
        return self._augmented(0, self._train_count(train_examples), batch_size, cutout_length)

    def test_batches(self, test_examples: int | None, batch_size: int) -> TestBatches:
        count = len(self.test_labels) if test_examples is None else min(test_examples, len(self.test_labels))
        return TestBatches(self.test_images[:count], self.test_labels[:count], batch_size, self._normalize)

    def _train_count(self, train_examples: int | None) -> int:
        available = len(self.train_labels)
        return available if train_examples is None else min(train_examples, available)

    def _augmented(self, start: int, stop: int, batch_size: int, cutout_length: int) -> AugmentedBatches:
        return AugmentedBatches(
            self.train_images[start:stop],
            self.train_labels[start:stop],
            batch_size,
            cutout_length,
            self._generator,
            self._normalize,
        )


class AugmentedBatches:
    """Training batches, reshuffled every epoch and augmented on the device.

    A partial last batch follows `batches_per_epoch`: a single image left over sits out the
    epoch, a different one each epoch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        cutout_length: int,
        generator: torch.Generator,
        normalize: Normalize,
    ):
        check_stream(len(labels), batch_size, training=True, remedy="raise train_examples or lower train_portion")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.cutout_length = cutout_length
        self._generator = generator
        self._normalize = normalize
        device = images.device
        self._span = torch.arange(IMAGE_SIZE, device=device)
        self._channels = torch.arange(3, device=device)[None, :, None, None]

    @property
    def examples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return batches_per_epoch(self.examples, self.batch_size, training=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = random_permutation(self.examples, self._generator, self.images.device)
        for number in range(len(self)):
            index = order[number * self.batch_size : (number + 1) * self.batch_size]
            batch = self._normalize(self._crop_and_flip(index))
            if self.cutout_length > 0:
                cut_out(batch, self.cutout_length, self._generator)
            yield batch, self.labels[index]

    def _crop_and_flip(self, index: torch.Tensor) -> torch.Tensor:
        """One gather: each output pixel reads its source pixel, or is 0 where the crop reaches into the padding."""
        count, device = index.numel(), self.images.device
        offsets = random_integers(self._generator, 2 * CROP_PADDING + 1, (count, 2), device) - CROP_PADDING
        flips = random_integers(self._generator, 2, (count, 1), device).bool()
        rows = offsets[:, :1] + self._span
        cols = offsets[:, 1:] + self._span
        cols = torch.where(flips, cols.flip(1), cols)
        inside = ((rows >= 0) & (rows < IMAGE_SIZE))[:, None, :, None] & ((cols >= 0) & (cols < IMAGE_SIZE))[
            :, None, None, :
        ]
        pixels = self.images[
            index[:, None, None, None],
            self._channels,
            rows.clamp(0, IMAGE_SIZE - 1)[:, None, :, None],
            cols.clamp(0, IMAGE_SIZE - 1)[:, None, None, :],
        ]
        return pixels * inside


class TestBatches:
    """Test batches in file order, normalised, no augmentation; the last batch may be partial."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, normalize: Normalize):
        check_stream(len(labels), batch_size, training=False)
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self._normalize = normalize

    @property
    def examples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return batches_per_epoch(self.examples, self.batch_size, training=False)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.examples, self.batch_size):
            stop = start + self.batch_size
            yield self._normalize(self.images[start:stop]), self.labels[start:stop]
