"""CIFAR-10 data layer: the official file format, safety, checksums, the stand-in, and device batches."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from cifar_files import Py2Pickle, batch_bytes, write_release
from torchvision.transforms import functional as tvf

from nasbench_repro.data import DataRequest, cifar10, resolve
from nasbench_repro.data.cifar10 import CifarData, CifarRelease, read_batch, read_release
from nasbench_repro.errors import DataError, UserError

CPU = torch.device("cpu")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the shared data folder beside the checkout


def request(root: Path, budget: str = "paper", allow_unofficial: bool = False, download: bool = False) -> DataRequest:
    return DataRequest("cifar10", root, budget, allow_unofficial=allow_unofficial, download=download)


@pytest.fixture
def release_root(tmp_path: Path) -> tuple[Path, dict]:
    written = write_release(tmp_path / cifar10.FOLDER)
    return tmp_path, written


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- the file format ----------------------------------------------------------------------------------------


def test_reads_official_format_files(release_root):
    root, written = release_root
    release = read_release(root / cifar10.FOLDER)
    assert release.train_images.shape == (60, 3, 32, 32) and release.train_images.dtype == np.uint8
    np.testing.assert_array_equal(release.train_images, written["train_images"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(release.train_labels, written["train_labels"])
    np.testing.assert_array_equal(release.test_images, written["test_images"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(release.test_labels, written["test_labels"])
    assert release.classes[:2] == ["airplane", "automobile"]


def test_package_writer_round_trips_through_the_reader(tmp_path):
    rng = np.random.RandomState(1)
    images = rng.randint(0, 256, (300, 3, 32, 32)).astype(np.uint8)
    labels = rng.randint(0, 10, 300)
    cifar10.write_batch(tmp_path / "batch", images, labels, "a batch", list(cifar10.SHAPES))
    read_images, read_labels = read_batch(tmp_path / "batch")
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_reads_files_written_by_the_shared_make_cifar10_writer(tmp_path):
    import importlib.util

    script = SHARED_DATA / "make_cifar10.py"
    if not script.exists():
        pytest.skip(f"the shared data folder {SHARED_DATA} is not on this machine")
    spec = importlib.util.spec_from_file_location("make_cifar10", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images = np.random.RandomState(2).randint(0, 256, (7, 32, 32, 3)).astype(np.uint8)
    module.write_batch(str(tmp_path / "batch"), "x", images, [3, 1, 4, 1, 5, 9, 2])
    read_images, read_labels = read_batch(tmp_path / "batch")
    np.testing.assert_array_equal(read_images, images.transpose(0, 3, 1, 2))
    assert read_labels.tolist() == [3, 1, 4, 1, 5, 9, 2]


class _RunsCommand:
    """Pickles as a call of os.system: what a hostile data file would contain."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_that_would_run_code_is_refused_without_running(release_root, tmp_path):
    root, _ = release_root
    marker = tmp_path / "ran"
    target = root / cifar10.FOLDER / "data_batch_2"
    target.write_bytes(pickle.dumps({"data": _RunsCommand(f"touch {marker}"), "labels": []}, protocol=2))
    with pytest.raises(DataError) as error:
        resolve(request(root, allow_unofficial=True))
    assert_one_line(error, str(target), "system", "refusing")
    assert not marker.exists()


def test_numpy_globals_other_than_array_reconstruction_are_refused(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(b"\x80\x02cnumpy\nload\nU\x03/etcq\x01\x85R.")
    with pytest.raises(DataError) as error:
        read_batch(path)
    assert_one_line(error, str(path), "numpy.load")


def test_a_truncated_file_is_a_one_line_error_naming_it(release_root):
    root, _ = release_root
    target = root / cifar10.FOLDER / "data_batch_3"
    target.write_bytes(target.read_bytes()[:5000])
    for allow_unofficial in (False, True):
        with pytest.raises(DataError) as error:
            resolve(request(root, allow_unofficial=allow_unofficial))
        assert_one_line(error, str(target), "truncated or corrupt")


def test_a_pickle_of_the_wrong_shape_is_refused(release_root):
    root, _ = release_root
    target = root / cifar10.FOLDER / "test_batch"
    wrong = Py2Pickle()
    wrong.begin_dict()
    wrong.string(b"data")
    wrong.uint8_matrix(np.zeros((2, 10), np.uint8))
    wrong.string(b"labels")
    wrong.int_list([0, 1])
    target.write_bytes(wrong.end_dict())
    with pytest.raises(DataError) as error:
        resolve(request(root, allow_unofficial=True))
    assert_one_line(error, str(target), "not a CIFAR-10 batch")


def test_labels_out_of_range_are_refused(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(batch_bytes(np.zeros((2, 32, 32, 3), np.uint8), [0, 10], "bad"))
    with pytest.raises(DataError) as error:
        read_batch(path)
    assert_one_line(error, str(path), "labels")


# --- checksums and the record -------------------------------------------------------------------------------


def test_checksum_mismatch_is_refused_unless_allowed(release_root):
    root, _ = release_root
    with pytest.raises(DataError) as error:
        resolve(request(root))
    assert_one_line(error, str(root / cifar10.FOLDER / "data_batch_1"), "not the official", "--allow-unofficial-data")

    source = resolve(request(root, allow_unofficial=True))
    assert source.name == "cifar10"
    assert source.description["official"] is False and source.description["stand_in"] is False
    assert (source.description["train_examples"], source.description["test_examples"]) == (60, 20)
    assert len(source.notices) == 1 and "not the official release" in source.notices[0]


def test_official_checksums_make_an_official_record(release_root, monkeypatch):
    root, _ = release_root
    folder = root / cifar10.FOLDER
    monkeypatch.setattr(cifar10, "OFFICIAL_MD5", {name: md5_of(folder / name) for name in cifar10.RELEASE_FILES})
    source = resolve(request(root))
    assert source.description["official"] is True
    assert source.description["files"]["data_batch_1"] == md5_of(folder / "data_batch_1")
    assert source.notices == []


def test_torchvision_lists_the_same_official_checksums():
    from torchvision.datasets import CIFAR10

    listed = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
    listed[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    assert listed == cifar10.OFFICIAL_MD5


# --- missing data: download, stand-in, or a clear error ----------------------------------------------------


@pytest.mark.parametrize("budget", ["paper", "reduced"])
def test_missing_data_stops_paper_and_reduced_runs(tmp_path, budget):
    with pytest.raises(DataError) as error:
        resolve(request(tmp_path, budget=budget))
    assert_one_line(error, str(tmp_path / cifar10.FOLDER), "--data-root")
    assert not (tmp_path / cifar10.STAND_IN).exists()


@pytest.fixture(scope="module")
def stand_in_root(tmp_path_factory) -> Path:
    """A data root without CIFAR-10 whose stand-in has been generated once for the module."""
    root = tmp_path_factory.mktemp("no-cifar")
    resolve(request(root, budget="smoke"))
    return root


def test_a_failed_download_is_fast_and_clean(stand_in_root, monkeypatch):
    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    started = time.monotonic()
    with pytest.raises(DataError) as error:
        resolve(request(stand_in_root, download=True))
    assert time.monotonic() - started < 10
    assert_one_line(error, "downloading it failed", "--data-root")
    assert socket.getdefaulttimeout() is None  # the short download timeout does not leak

    source = resolve(request(stand_in_root, budget="smoke", download=True))
    assert source.name == cifar10.STAND_IN and "downloading it failed" in source.notices[0]


def test_smoke_runs_get_the_announced_stand_in(stand_in_root):
    source = resolve(request(stand_in_root, budget="smoke"))
    folder = stand_in_root / cifar10.STAND_IN / cifar10.FOLDER
    assert source.name == "synthetic-shapes" != "cifar10"
    assert len(source.notices) == 1 and "stand-in" in source.notices[0] and "\n" not in source.notices[0]
    assert source.description["stand_in"] is True and source.description["official"] is False
    assert source.description["stands_in_for"] == "cifar10"
    assert source.description["root"] == str(folder)
    assert (source.description["train_examples"], source.description["test_examples"]) == (5000, 1000)
    assert sorted(os.listdir(folder)) == sorted(cifar10.RELEASE_FILES)

    data = source.load(CPU, torch.Generator().manual_seed(0))
    assert isinstance(data, CifarData) and data.classes == list(cifar10.SHAPES)
    assert torch.bincount(data.train_labels).tolist() == [500] * 10


def test_the_stand_in_is_generated_once_and_deterministically(stand_in_root, tmp_path):
    folder = stand_in_root / cifar10.STAND_IN / cifar10.FOLDER
    written = {name: (folder / name).stat().st_mtime_ns for name in cifar10.RELEASE_FILES}
    reused = resolve(request(stand_in_root, budget="smoke")).description["files"]
    assert {name: (folder / name).stat().st_mtime_ns for name in cifar10.RELEASE_FILES} == written
    assert resolve(request(tmp_path, budget="smoke")).description["files"] == reused


def test_the_stand_in_is_learnable_by_a_small_cnn(stand_in_root):
    torch.manual_seed(0)
    data = resolve(request(stand_in_root, budget="smoke")).load(CPU, torch.Generator().manual_seed(0))
    network = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        network.train()
        for images, labels in data.train_batches(1024, 64, cutout_length=0):
            optimizer.zero_grad()
            nn.functional.cross_entropy(network(images), labels).backward()
            optimizer.step()
    network.eval()
    with torch.no_grad():
        correct = sum(
            int((network(images).argmax(1) == labels).sum()) for images, labels in data.test_batches(None, 500)
        )
    assert correct / 1000 > 0.3  # chance is 0.1


def test_complete_cifar_files_are_used_for_smoke_runs_too(release_root):
    root, _ = release_root
    source = resolve(request(root, budget="smoke", allow_unofficial=True))
    assert source.name == "cifar10"
    assert not (root / cifar10.STAND_IN).exists()


# --- batches on the device ---------------------------------------------------------------------------------


def make_data(images: np.ndarray, labels: np.ndarray, seed: int = 0, device: torch.device = CPU) -> CifarData:
    """CifarData straight from arrays (N x 3 x 32 x 32); the test set is the training set."""
    release = CifarRelease(images, labels.astype(np.int64), images, labels.astype(np.int64), list(cifar10.SHAPES))
    return CifarData(release, device, torch.Generator(device=device).manual_seed(seed))


def random_images(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    return rng.randint(1, 256, (count, 3, 32, 32)).astype(np.uint8), rng.randint(0, 10, count)


def to_pixels(batch: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: back to uint8-valued pixels."""
    mean = torch.tensor(cifar10.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar10.STD).view(1, 3, 1, 1)
    return torch.round(batch.cpu() * std * 255 + mean * 255).numpy()


def epoch(stream) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(stream)


def test_batches_have_the_documented_shapes_dtypes_and_device():
    data = make_data(*random_images(50))
    assert data.num_classes == 10 and data.input_shape == (3, 32, 32)
    weights, architecture = data.search_batches(40, 0.5, 8)
    streams = [weights, architecture, data.train_batches(50, 16, 16), data.test_batches(50, 16)]
    for stream in streams:
        for images, labels in stream:
            assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32)
            assert labels.dtype == torch.int64 and labels.shape == images.shape[:1]
            assert images.device == labels.device == CPU


def test_partial_batches_are_kept_but_never_a_single_training_image():
    data = make_data(*random_images(10))
    assert [len(images) for images, _ in data.train_batches(9, 4, 0)] == [4, 4]
    assert len(data.train_batches(9, 4, 0)) == 2
    assert [len(images) for images, _ in data.train_batches(10, 4, 0)] == [4, 4, 2]
    assert [len(images) for images, _ in data.test_batches(9, 4)] == [4, 4, 1]
    assert len(data.test_batches(9, 4)) == 3
    with pytest.raises(UserError):
        data.train_batches(1, 4, 0)


def test_the_search_split_and_reshuffling_follow_darts():
    count = 200
    identities = np.arange(1, count + 1, dtype=np.uint8)  # each image is one grey level: its identity
    images = np.broadcast_to(identities[:, None, None, None], (count, 3, 32, 32)).copy()
    data = make_data(images, np.arange(count) % 10)
    weights, architecture = data.search_batches(150, 0.5, 16)
    assert (weights.examples, architecture.examples) == (75, 75)

    def seen(stream) -> list[int]:
        return [int(pixels.max()) for images, _ in stream for pixels in to_pixels(images)]

    first, second = seen(weights), seen(weights)
    assert sorted(first) == sorted(second) == list(range(1, 76))
    assert first != second  # reshuffled each epoch
    assert sorted(seen(architecture)) == list(range(76, 151))


def test_crops_and_flips_are_exactly_those_of_a_zero_padded_image():
    images, _ = random_images(10, seed=3)
    data = make_data(images, np.arange(10))  # a label names its image
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    seen = set()
    for _ in range(6):
        for batch, labels in data.train_batches(None, 5, 0):
            for pixels, label in zip(to_pixels(batch), labels.tolist(), strict=True):
                matches = [
                    (row, col, flip)
                    for row in range(9)
                    for col in range(9)
                    for flip in (False, True)
                    if np.array_equal(pixels, _crop(padded[label], row, col, flip))
                ]
                assert len(matches) == 1
                seen.add(matches[0])
    assert len(seen) > 40  # offsets and flips vary


def _crop(image: np.ndarray, row: int, col: int, flip: bool) -> np.ndarray:
    window = image[:, row : row + 32, col : col + 32]
    return window[:, :, ::-1] if flip else window


def test_cutout_zeroes_one_clipped_square_after_normalising():
    images, labels = random_images(64, seed=4)
    plain = next(iter(make_data(images, labels, seed=5).train_batches(None, 64, 0)))[0]
    cut = next(iter(make_data(images, labels, seed=5).train_batches(None, 64, 16)))[0]
    for before, after in zip(plain, cut, strict=True):
        zeroed = (after == 0).all(0)
        assert torch.equal(after[:, ~zeroed], before[:, ~zeroed])
        rows, cols = torch.nonzero(zeroed, as_tuple=True)
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert 8 <= height <= 16 and 8 <= width <= 16 and int(zeroed.sum()) == height * width


def test_augmentation_is_reproducible_per_seed_and_differs_across_seeds():
    images, labels = random_images(40)

    def two_epochs(seed: int) -> list[torch.Tensor]:
        stream = make_data(images, labels, seed=seed).train_batches(None, 16, 16)
        return [batch for _ in range(2) for batch, _ in stream]

    first, again, other = two_epochs(0), two_epochs(0), two_epochs(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_test_batches_are_normalised_like_torchvision_in_file_order():
    images, labels = random_images(12)
    batches = epoch(make_data(images, labels).test_batches(None, 5))
    expected = torch.stack(
        [tvf.normalize(torch.from_numpy(image).float() / 255, cifar10.MEAN, cifar10.STD) for image in images]
    )
    torch.testing.assert_close(torch.cat([images for images, _ in batches]), expected, rtol=0, atol=1e-5)
    assert torch.cat([labels for _, labels in batches]).tolist() == labels.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_stay_on_the_device_without_host_syncs():
    cuda = torch.device("cuda")
    images, labels = random_images(300)
    data = make_data(images, labels, device=cuda)
    streams = [*data.search_batches(None, 0.5, 64), data.train_batches(None, 96, 16), data.test_batches(None, 100)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = [batch for stream in streams for batch in stream]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(images.is_cuda and labels.is_cuda for images, labels in batches)

    def first_batch(seed: int) -> torch.Tensor:
        return next(iter(make_data(images, labels, seed=seed, device=cuda).train_batches(None, 96, 16)))[0]

    assert torch.equal(first_batch(0), first_batch(0)) and not torch.equal(first_batch(0), first_batch(1))


# --- genuine CIFAR-10 from the shared copies ---------------------------------------------------------------

FIRST_LABELS = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


def write_genuine(out: Path, source: str) -> Path:
    import subprocess
    import sys

    if not (SHARED_DATA / "make_cifar10.py").exists():
        pytest.skip(f"the shared data folder {SHARED_DATA} is not on this machine")
    subprocess.run(
        [sys.executable, str(SHARED_DATA / "make_cifar10.py"), str(out), "--source", source],
        check=True,
        capture_output=True,
    )
    return out


def test_genuine_lossless_subset(tmp_path):
    root = write_genuine(tmp_path, "lossless5k")
    with pytest.raises(DataError):
        resolve(request(root))  # not the official files, by construction
    source = resolve(request(root, allow_unofficial=True))
    assert source.name == "cifar10" and source.description["official"] is False
    assert (source.description["train_examples"], source.description["test_examples"]) == (4000, 1000)
    data = source.load(CPU, torch.Generator().manual_seed(0))
    assert data.train_labels[:10].tolist() == FIRST_LABELS
    assert data.train_images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]  # red plane, row 0
    assert data.classes[FIRST_LABELS[0]] == "frog"


@pytest.mark.slow
def test_genuine_full_jpeg_copy(tmp_path):
    root = write_genuine(tmp_path, "jpeg60k")
    source = resolve(request(root, allow_unofficial=True))
    assert (source.description["train_examples"], source.description["test_examples"]) == (50000, 10000)
    data = source.load(CPU, torch.Generator().manual_seed(0))
    assert data.train_labels[:10].tolist() == FIRST_LABELS
    assert torch.bincount(data.train_labels).tolist() == [5000] * 10
    lossless = np.load(SHARED_DATA / "cifar10" / "cifar10_lossless_5k.npz")["x_train"].transpose(0, 3, 1, 2)
    difference = np.abs(data.train_images[:4000].numpy().astype(int) - lossless.astype(int)).mean()
    assert difference < 10  # JPEG quality 75: about 5-6 levels
