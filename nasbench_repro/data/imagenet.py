"""ImageNet (ILSVRC-2012) from the standard class folders, for the mobile setting (224 x 224).

`<root>/imagenet/train/<wnid>/*.JPEG` and `<root>/imagenet/val/<wnid>/*.JPEG` (validation
images sorted into class folders) are listed by torchvision's ImageFolder and decoded and
transformed in DataLoader workers. Batches leave the workers as uint8 (a quarter of the
bytes of float32), travel through pinned memory with non-blocking copies, and are
normalised on the device.

Transforms (facts from quark0/darts cnn/train_imagenet.py and yuhuixu1993/PC-DARTS
train_search_imagenet.py):
- evaluation training: RandomResizedCrop 224, horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.2);
- search, both subsets: RandomResizedCrop 224 and horizontal flip (PC-DARTS uses no jitter there);
- validation: Resize 256, CenterCrop 224;
- then normalisation with the ImageNet mean and std.
PC-DARTS searches on 10% (weights) and 2.5% (architecture) of every class; here those
subsets are sampled per class from the run's generator.

Every image is transformed under its own seed, drawn from the run's generator once per
epoch, so the batches are reproducible and do not depend on the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms
from torchvision.datasets import ImageFolder

from nasbench_repro.data import DataRequest, DataSource
from nasbench_repro.data.augment import Normalize, batches_per_epoch, check_stream, cut_out, random_integers
from nasbench_repro.errors import DataError

FOLDER = "imagenet"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_SIZE = 224
RESIZE_SIZE = 256
COLOR_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2}
SEARCH_TRAIN_FRACTION = 0.1
SEARCH_VALID_FRACTION = 0.025
MAX_WORKERS = 8

EVALUATION_TRANSFORM = transforms.Compose(
    [
        transforms.RandomResizedCrop(CROP_SIZE),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(**COLOR_JITTER),
        transforms.PILToTensor(),
    ]
)
SEARCH_TRANSFORM = transforms.Compose(
    [
        transforms.RandomResizedCrop(CROP_SIZE),
        transforms.RandomHorizontalFlip(),
        transforms.PILToTensor(),
    ]
)
VALIDATION_TRANSFORM = transforms.Compose(
    [
        transforms.Resize(RESIZE_SIZE),
        transforms.CenterCrop(CROP_SIZE),
        transforms.PILToTensor(),
    ]
)


def resolve(request: DataRequest) -> DataSource:
    """List both splits now, so missing or empty folders stop the run before it starts."""
    root = Path(request.root) / FOLDER
    train_dir, val_dir = root / "train", root / "val"
    for directory in (train_dir, val_dir):
        if not directory.is_dir():
            raise DataError(
                f"ImageNet folder {directory} not found; put ILSVRC-2012 there as <wnid>/*.JPEG class "
                f"folders (it cannot be downloaded automatically), or point --data-root at a folder "
                f"holding imagenet/train and imagenet/val"
            )
    classes = _class_folders(train_dir)
    if not classes:
        raise DataError(f"{train_dir} has no class folders; it should hold one <wnid>/ folder of JPEGs per class")
    unknown = sorted(set(_class_folders(val_dir)) - set(classes))
    if unknown:
        raise DataError(
            f"{val_dir / unknown[0]} is a class that {train_dir} lacks; train/ and val/ must use the same class folders"
        )
    train = _list_images(train_dir, classes, allow_empty=False)
    val = _list_images(val_dir, classes, allow_empty=True)
    if not val.samples:
        raise DataError(f"{val_dir} holds no images; it should hold the validation JPEGs in <wnid>/ folders")
    description = {
        "root": str(root),
        "official": None,  # ImageNet publishes no per-file checksums: only the layout is checked
        "stand_in": False,
        "classes": len(classes),
        "train_examples": len(train.samples),
        "test_examples": len(val.samples),
    }
    return DataSource("imagenet", description, lambda device, generator: ImageNetData(train, val, device, generator))


def _class_folders(directory: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())


class _ClassFolders(ImageFolder):
    """An ImageFolder over a given class list, so val's labels follow train's even where val lacks a class."""

    def __init__(self, directory: Path, classes: list[str], allow_empty: bool):
        self._given_classes = classes
        super().__init__(str(directory), allow_empty=allow_empty)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return list(self._given_classes), {name: index for index, name in enumerate(self._given_classes)}


def _list_images(directory: Path, classes: list[str], allow_empty: bool) -> ImageFolder:
    try:
        return _ClassFolders(directory, classes, allow_empty)
    except FileNotFoundError as error:
        raise DataError(f"{directory}: {str(error).splitlines()[0]}") from None


def default_workers() -> int:
    return min(MAX_WORKERS, len(os.sched_getaffinity(0)))


def per_class_subsets(labels: np.ndarray, fractions: Sequence[float], generator: torch.Generator) -> list[np.ndarray]:
    """Disjoint subsets of image indices, each holding `fraction` of every class, drawn from `generator`.

    A class contributes round(fraction x its size) images, at least one while it has any left.
    Each subset comes back sorted by index.
    """
    seed = int(random_integers(generator, 2**62, (1,), torch.device("cpu")))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    grouped = shuffled[np.argsort(labels[shuffled], kind="stable")]  # by class, random within a class
    class_sizes = np.bincount(labels)
    class_starts = np.cumsum(class_sizes) - class_sizes
    rank = np.empty(len(labels), dtype=np.int64)
    rank[grouped] = np.arange(len(labels)) - np.repeat(class_starts, class_sizes)
    subsets, taken = [], np.zeros_like(class_sizes)
    for fraction in fractions:
        wanted = np.maximum(1, np.rint(fraction * class_sizes)).astype(np.int64)
        upto = np.minimum(taken + wanted, class_sizes)
        subsets.append(np.flatnonzero((rank >= taken[labels]) & (rank < upto[labels])))
        taken = upto
    return subsets


class ImageNetData:
    """ImageNet's two splits, handing out batch streams on the run's device.

    `train_examples` caps a training subset (sampled per class, so every class stays in it);
    `test_examples` takes evenly spaced validation images (fixed, covering all classes).
    """

    input_shape = (3, CROP_SIZE, CROP_SIZE)

    def __init__(
        self,
        train: ImageFolder,
        val: ImageFolder,
        device: torch.device,
        generator: torch.Generator,
        num_workers: int | None = None,
    ):
        self.train, self.val = train, val
        self.num_classes = len(train.classes)
        self.device = torch.device(device)
        self.num_workers = default_workers() if num_workers is None else num_workers
        self._generator = generator
        self._train_labels = np.asarray(train.targets, dtype=np.int64)
        self._normalize = Normalize(MEAN, STD, self.device)

    def search_batches(
        self,
        train_examples: int | None,
        train_portion: float | None,
        batch_size: int,
        *,
        train_fraction: float = SEARCH_TRAIN_FRACTION,
        valid_fraction: float = SEARCH_VALID_FRACTION,
    ) -> tuple[FolderBatches, FolderBatches]:
        """PC-DARTS's search subsets: `train_fraction` of every class trains the weights, a disjoint
        `valid_fraction` the architecture.

        `train_portion` is accepted for the CIFAR call signature and unused: the fractions split
        the data. `train_examples` caps both subsets together, keeping their ratio.
        """
        total = len(self._train_labels)
        if train_examples is not None and train_examples < (train_fraction + valid_fraction) * total:
            scale = train_examples / ((train_fraction + valid_fraction) * total)
            train_fraction, valid_fraction = train_fraction * scale, valid_fraction * scale
        weights, architecture = per_class_subsets(self._train_labels, (train_fraction, valid_fraction), self._generator)
        return (
            self._stream(self.train, weights, batch_size, SEARCH_TRANSFORM, shuffle=True),
            self._stream(self.train, architecture, batch_size, SEARCH_TRANSFORM, shuffle=True),
        )

    def train_batches(self, train_examples: int | None, batch_size: int, cutout_length: int = 0) -> FolderBatches:
        """Evaluation training with the mobile-setting augmentation (and cutout on the device when asked)."""
        total = len(self._train_labels)
        if train_examples is None or train_examples >= total:
            indices = np.arange(total)
        else:
            [indices] = per_class_subsets(self._train_labels, (train_examples / total,), self._generator)
        return self._stream(
            self.train, indices, batch_size, EVALUATION_TRANSFORM, shuffle=True, cutout_length=cutout_length
        )

    def test_batches(self, test_examples: int | None, batch_size: int) -> FolderBatches:
        total = len(self.val.samples)
        count = total if test_examples is None else min(test_examples, total)
        indices = np.linspace(0, total, count, endpoint=False).astype(np.int64)
        return self._stream(self.val, indices, batch_size, VALIDATION_TRANSFORM, shuffle=False)

    def _stream(
        self,
        folder: ImageFolder,
        indices: np.ndarray,
        batch_size: int,
        transform: Any,
        *,
        shuffle: bool,
        cutout_length: int = 0,
    ) -> FolderBatches:
        return FolderBatches(
            folder,
            indices,
            batch_size,
            transform,
            shuffle=shuffle,
            device=self.device,
            generator=self._generator,
            normalize=self._normalize,
            cutout_length=cutout_length,
            num_workers=self.num_workers,
        )


class _SeededImages(Dataset):
    """Loads image `index` of `folder` and transforms it under `seed`, whichever process does the work.

    The transform's randomness comes from torch's global generator; `fork_rng` keeps the
    per-image seed from disturbing it when there are no workers.
    """

    def __init__(self, folder: ImageFolder, transform: Any):
        self._folder = folder
        self._transform = transform

    def __getitem__(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, int]:
        index, seed = key
        path, label = self._folder.samples[index]
        image = self._folder.loader(path)
        if seed is None:
            return self._transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._transform(image), label


class _EpochOrder(Sampler):
    """The (image index, seed) keys of the current epoch; the stream replaces them before each epoch."""

    def __init__(self, keys: list[tuple[int, int | None]]):
        self.keys = keys

    def __iter__(self) -> Iterator[tuple[int, int | None]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class FolderBatches:
    """Batches of folder images: decoded in workers, normalised (and cut out) on the device.

    Training streams reshuffle every epoch from the run's generator and keep a partial last
    batch unless it would hold one image, which then sits out the epoch (BatchNorm cannot
    train on a batch of one); the validation stream keeps its fixed order and every image.
    """

    def __init__(
        self,
        folder: ImageFolder,
        indices: np.ndarray,
        batch_size: int,
        transform: Any,
        *,
        shuffle: bool,
        device: torch.device,
        generator: torch.Generator,
        normalize: Normalize,
        cutout_length: int,
        num_workers: int,
    ):
        check_stream(len(indices), batch_size, training=shuffle, remedy="raise train_examples")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.cutout_length = cutout_length
        self._shuffle = shuffle
        self._device = device
        self._generator = generator
        self._normalize = normalize
        self._order = _EpochOrder([(int(index), None) for index in self.indices])
        # The loader's own generator: otherwise every epoch draws the workers' base seed from torch's global one.
        self._loader = DataLoader(
            _SeededImages(folder, transform),
            batch_size=batch_size,
            sampler=self._order,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=torch.Generator(),
        )

    @property
    def examples(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return batches_per_epoch(self.examples, self.batch_size, training=self._shuffle)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._shuffle:
            self._order.keys = self._epoch_keys()
        for pixels, labels in self._loader:
            batch = self._normalize(pixels.to(self._device, non_blocking=True))
            if self.cutout_length > 0:
                cut_out(batch, self.cutout_length, self._generator)
            yield batch, labels.to(self._device, non_blocking=True)

    def _epoch_keys(self) -> list[tuple[int, int | None]]:
        """This epoch's order and per-image seeds, from one draw of the run's generator (one sync per epoch)."""
        epoch_seed = int(random_integers(self._generator, 2**62, (1,), torch.device("cpu")))
        permutation = torch.randperm(self.examples, generator=torch.Generator().manual_seed(epoch_seed)).numpy()
        order = self.indices[permutation][: len(self) * self.batch_size]
        return [(int(index), epoch_seed + position) for position, index in enumerate(order)]
