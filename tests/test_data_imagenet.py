"""ImageNet data layer: class folders, the mobile-setting transforms, PC-DARTS's per-class search subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from nasbench_repro.data import DataRequest, imagenet, resolve
from nasbench_repro.data.imagenet import ImageNetData, per_class_subsets
from nasbench_repro.errors import DataError, UserError

CPU = torch.device("cpu")
CLASSES = ["n01440764", "n01443537", "n01484850"]
SHARED_VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet" / "val"


def write_jpegs(directory: Path, count: int, seed: int) -> None:
    """`count` small JPEGs of varied sizes and colours in `directory`."""
    rng = np.random.RandomState(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        height, width = rng.randint(12, 40, 2)
        pixels = rng.randint(0, 256, (height, width, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(directory / f"{directory.name}_{number}.JPEG", quality=90)


def write_tree(root: Path, train_per_class: int = 8, val_per_class: int = 3) -> Path:
    for index, wnid in enumerate(CLASSES):
        write_jpegs(root / "imagenet" / "train" / wnid, train_per_class, seed=index)
        write_jpegs(root / "imagenet" / "val" / wnid, val_per_class, seed=100 + index)
    return root


def request(root: Path) -> DataRequest:
    return DataRequest("imagenet", root, "paper")


def load(root: Path, seed: int = 0, num_workers: int = 0) -> ImageNetData:
    source = resolve(request(root))
    data = source.load(CPU, torch.Generator().manual_seed(seed))
    return ImageNetData(data.train, data.val, CPU, torch.Generator().manual_seed(seed), num_workers=num_workers)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("imagenet-tree"))


def test_resolve_lists_both_splits(tree):
    source = resolve(request(tree))
    assert source.name == "imagenet" and source.notices == []
    assert source.description["classes"] == 3
    assert (source.description["train_examples"], source.description["test_examples"]) == (24, 9)
    assert source.description["stand_in"] is False
    data = source.load(CPU, torch.Generator().manual_seed(0))
    assert data.num_classes == 3 and data.input_shape == (3, 224, 224)


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_missing_split_is_a_one_line_error(tmp_path, split):
    write_tree(tmp_path, train_per_class=1, val_per_class=1)
    missing = tmp_path / "imagenet" / split
    missing.rename(tmp_path / "elsewhere")
    with pytest.raises(DataError) as error:
        resolve(request(tmp_path))
    message = str(error.value)
    assert "\n" not in message and str(missing) in message and "--data-root" in message


def test_val_classes_must_be_train_classes(tmp_path):
    write_tree(tmp_path, train_per_class=1, val_per_class=1)
    write_jpegs(tmp_path / "imagenet" / "val" / "n09999999", 1, seed=0)
    with pytest.raises(DataError, match="n09999999"):
        resolve(request(tmp_path))


def test_an_empty_train_class_is_an_error_but_val_may_lack_a_class(tmp_path):
    write_tree(tmp_path, train_per_class=1, val_per_class=1)
    for image in (tmp_path / "imagenet" / "val" / CLASSES[0]).iterdir():
        image.unlink()
    assert resolve(request(tmp_path)).description["test_examples"] == 2
    for image in (tmp_path / "imagenet" / "train" / CLASSES[1]).iterdir():
        image.unlink()
    with pytest.raises(DataError, match=CLASSES[1]):
        resolve(request(tmp_path))


def test_validation_batches_match_torchvision_in_fixed_order(tree):
    data = load(tree)
    stream = data.test_batches(None, 4)
    batches = list(stream)
    assert len(stream) == len(batches) == 3 and [len(images) for images, _ in batches] == [4, 4, 1]
    reference = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(imagenet.MEAN, imagenet.STD),
        ]
    )
    expected = torch.stack([reference(Image.open(path).convert("RGB")) for path, _ in data.val.samples])
    torch.testing.assert_close(torch.cat([images for images, _ in batches]), expected, rtol=0, atol=1e-5)
    assert torch.cat([labels for _, labels in batches]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [labels.tolist() for _, labels in data.test_batches(3, 8)] == [[0, 1, 2]]  # evenly spaced


def test_training_batches_shapes_partial_batches_and_reproducibility(tree):
    def first_epoch(seed: int, num_workers: int = 0) -> list[torch.Tensor]:
        return [images for images, _ in load(tree, seed, num_workers).train_batches(None, 5, cutout_length=0)]

    global_state = torch.get_rng_state()
    batches = first_epoch(0)
    assert torch.equal(torch.get_rng_state(), global_state)  # per-image seeds leave the run's RNG alone
    assert [len(images) for images in batches] == [5, 5, 5, 5, 4]  # the partial batch stays
    assert all(images.shape[1:] == (3, 224, 224) and images.dtype == torch.float32 for images in batches)
    again, other = first_epoch(0), first_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    assert not torch.equal(batches[0], other[0])

    stream = load(tree).train_batches(21, 5)
    assert len(stream) == len(list(stream))
    singleton = load(tree).train_batches(None, 23)  # 24 = 23 + 1: the lone image sits out
    assert len(singleton) == 1 and [len(images) for images, _ in singleton] == [23]
    with pytest.raises(UserError):
        load(tree).train_batches(None, 0)


def test_batches_do_not_depend_on_the_worker_count(tree):
    def first_epoch(num_workers: int) -> list[torch.Tensor]:
        return [images for images, _ in load(tree, 3, num_workers).train_batches(None, 8)]

    assert all(torch.equal(a, b) for a, b in zip(first_epoch(0), first_epoch(2), strict=True))


def test_cutout_on_the_device(tree):
    images, labels = next(iter(load(tree).train_batches(None, 4, cutout_length=16)))
    assert labels.dtype == torch.int64
    zeroed = (images == 0).all(1)
    assert all(8 * 8 <= int(mask.sum()) <= 16 * 16 for mask in zeroed)  # one square, maybe clipped


def test_per_class_subsets_are_disjoint_balanced_and_seeded():
    labels = np.repeat(np.arange(5), [400, 400, 400, 400, 399])
    weights, architecture = per_class_subsets(labels, (0.1, 0.025), torch.Generator().manual_seed(0))
    assert np.bincount(labels[weights]).tolist() == [40, 40, 40, 40, 40]
    assert np.bincount(labels[architecture]).tolist() == [10, 10, 10, 10, 10]
    assert not set(weights) & set(architecture)
    again = per_class_subsets(labels, (0.1, 0.025), torch.Generator().manual_seed(0))
    other = per_class_subsets(labels, (0.1, 0.025), torch.Generator().manual_seed(1))
    assert np.array_equal(again[0], weights) and np.array_equal(again[1], architecture)
    assert not np.array_equal(other[0], weights)


def test_search_batches_sample_the_pcdarts_subsets(tmp_path):
    write_tree(tmp_path, train_per_class=40, val_per_class=1)
    data = load(tmp_path)
    weights, architecture = data.search_batches(None, 0.5, 4)
    assert (weights.examples, architecture.examples) == (12, 3)  # 10% and 2.5% of 40, per class
    assert np.bincount(np.asarray(data.train.targets)[weights.indices]).tolist() == [4, 4, 4]
    assert not set(weights.indices) & set(architecture.indices)
    images, labels = next(iter(weights))
    assert images.shape == (4, 3, 224, 224) and labels.dtype == torch.int64

    capped = data.search_batches(60, 0.5, 4, train_fraction=0.5, valid_fraction=0.25)
    assert [stream.examples for stream in capped] == [39, 21]  # 60 of 120 images, still about 2:1


def test_reads_the_shared_genuine_jpegs(tmp_path):
    if not SHARED_VAL.is_dir():
        pytest.skip(f"the shared data folder {SHARED_VAL.parent} is not on this machine")
    (tmp_path / "imagenet").mkdir()
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split).symlink_to(SHARED_VAL)
    source = resolve(request(tmp_path))
    assert source.description["classes"] == source.description["test_examples"] == 100
    data = source.load(CPU, torch.Generator().manual_seed(0))
    images, labels = next(iter(data.test_batches(4, 4)))
    assert images.shape == (4, 3, 224, 224) and labels.tolist() == [0, 25, 50, 75]
