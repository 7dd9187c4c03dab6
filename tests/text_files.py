"""Small corpora in exactly the published on-disk forms (Mikolov's PTB, WikiText-2's .tokens)."""

from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

from nasbench_repro.data.text import PTB, WT2, CorpusFormat

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the shared data folder beside the checkout
PTB_WORDS = ("the", "a", "company", "said", "its", "shares", "rose", "N", "<unk>", "in", "mr.", "$", "'s", "to")


def ptb_lines(count: int, seed: int) -> list[str]:
    """Mikolov-form sentences: lower-case words, numbers as N, a leading space as in the release."""
    rng = random.Random(seed)
    return [" " + " ".join(rng.choice(PTB_WORDS) for _ in range(rng.randint(3, 12))) for _ in range(count)]


def write_corpus(root: Path, corpus: CorpusFormat, lines: dict[str, list[str]]) -> Path:
    """Write one file per split (each line ends with a newline) under `root/<corpus folder>/`."""
    folder = root / corpus.folder
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_lines in lines.items():
        (folder / corpus.filenames[split]).write_text("".join(line + "\n" for line in split_lines), encoding="utf-8")
    return folder


def write_ptb(root: Path, train: int = 200, held_out: int = 30) -> Path:
    return write_corpus(
        root, PTB, {"train": ptb_lines(train, 0), "valid": ptb_lines(held_out, 1), "test": ptb_lines(held_out, 2)}
    )


def write_wt2(root: Path) -> Path:
    """About 230 training tokens: enough rows for the smoke budget's batch of 32 and BPTT windows."""
    article = [" ", " = Robert <unk> = ", " ", " Robert <unk> is an English actor . He had a guest role . ", " "]
    return write_corpus(root, WT2, {"train": article * 11, "valid": article * 2, "test": article[:4]})


def copy_genuine_ptb(root: Path, lines: int | None = None) -> Path:
    """Gunzip shared/data/ptb into `root/ptb/` (only the first `lines` lines of each split when given)."""
    source = SHARED_DATA / "ptb"
    folder = root / PTB.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in PTB.filenames.values():
        with (
            gzip.open(source / f"{name}.gz", "rt", encoding="utf-8", newline="") as packed,
            (folder / name).open("w", encoding="utf-8", newline="") as plain,
        ):
            if lines is None:
                shutil.copyfileobj(packed, plain)
            else:
                plain.writelines(line for _, line in zip(range(lines), packed, strict=False))
    return folder


def genuine_ptb_available() -> bool:
    return all((SHARED_DATA / "ptb" / f"{name}.gz").is_file() for name in PTB.filenames.values())
