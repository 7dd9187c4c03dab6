"""Text corpora: the published file forms, vocabulary and ids, checksums, refusals, batchify and BPTT windows."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from text_files import (
    SHARED_DATA,
    copy_genuine_ptb,
    genuine_ptb_available,
    ptb_lines,
    write_corpus,
    write_ptb,
    write_wt2,
)

from nasbench_repro.budgets import get_budget
from nasbench_repro.data import DataRequest, resolve
from nasbench_repro.data.text import (
    MIN_WINDOW,
    PTB,
    WT2,
    FixedLengthBatches,
    TextCorpus,
    VariableLengthBatches,
)
from nasbench_repro.errors import DataError, UserError
from nasbench_repro.protocol import load_protocol

CPU = torch.device("cpu")


def request(root: Path, dataset: str = "ptb", allow_unofficial: bool = True) -> DataRequest:
    return DataRequest(dataset, root, "smoke", allow_unofficial=allow_unofficial)


def load(root: Path, dataset: str = "ptb", seed: int = 0) -> TextCorpus:
    return resolve(request(root, dataset)).load(CPU, torch.Generator().manual_seed(seed))


def refusal(root: Path, *fragments: str, dataset: str = "ptb", allow_unofficial: bool = True) -> str:
    with pytest.raises(DataError) as error:
        resolve(request(root, dataset, allow_unofficial))
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- vocabulary and ids -----------------------------------------------------------------------------------------


def test_ptb_round_trip_and_vocabulary_in_first_appearance_order(tmp_path):
    write_corpus(tmp_path, PTB, {"train": [" the cat sat", " the dog N"], "valid": [" a dog"], "test": [" the <unk>"]})
    corpus = load(tmp_path)
    assert corpus.vocabulary == ["the", "cat", "sat", "<eos>", "dog", "N", "a", "<unk>"]
    assert corpus.tokens["train"].tolist() == [0, 1, 2, 3, 0, 4, 5, 3]
    assert corpus.words(corpus.tokens["valid"]) == ["a", "dog", "<eos>"]
    assert corpus.words(corpus.tokens["test"]) == ["the", "<unk>", "<eos>"]
    description = resolve(request(tmp_path)).description
    assert (description["train_examples"], description["valid_examples"], description["test_examples"]) == (8, 3, 3)
    assert description["vocabulary_size"] == 8 and description["words_outside_train"] == 2
    assert description["example"] == "token" and description["official"] is False


def test_every_line_reads_back_as_its_words_and_eos(tmp_path):
    lines = ptb_lines(50, seed=3)
    write_corpus(tmp_path, PTB, {"train": lines, "valid": lines[:5], "test": lines[5:9]})
    corpus = load(tmp_path)
    expected = [word for line in lines for word in (*line.split(), "<eos>")]
    assert corpus.words(corpus.tokens["train"]) == expected
    assert corpus.vocabulary_size == len(set(expected))


def test_wikitext_blank_lines_and_headings_are_tokens(tmp_path):
    write_wt2(tmp_path)
    corpus = load(tmp_path, "wt2")
    words = corpus.words(corpus.tokens["test"])
    assert words[:6] == ["<eos>", "=", "Robert", "<unk>", "=", "<eos>"]
    assert words.count("<eos>") == 4  # one per line, blank lines included
    assert resolve(request(tmp_path, "wt2")).name == "wt2"


def test_windows_line_endings_read_as_newlines(tmp_path):
    folder = write_ptb(tmp_path)
    train = folder / PTB.filenames["train"]
    train.write_bytes(train.read_bytes().replace(b"\n", b"\r\n"))
    corpus = load(tmp_path)
    assert "\r" not in "".join(corpus.vocabulary)


# --- checksums and refusals ------------------------------------------------------------------------------------


def test_unofficial_files_need_the_flag_and_say_so(tmp_path):
    write_ptb(tmp_path)
    refusal(
        tmp_path,
        "is not the official Penn Treebank file",
        "MD5",
        PTB.checksums["train"],
        "--allow-unofficial-data",
        allow_unofficial=False,
    )
    source = resolve(request(tmp_path))
    assert source.description["official"] is False
    assert len(source.notices) == 1 and "not the official release (3 of 3" in source.notices[0]


def test_wikitext_checksums_are_sha1(tmp_path):
    write_wt2(tmp_path)
    refusal(tmp_path, "SHA1", WT2.checksums["train"], dataset="wt2", allow_unofficial=False)


def test_missing_files_name_the_folder_and_where_to_get_them(tmp_path):
    refusal(tmp_path, "Penn Treebank not found", "does not exist", "simple-examples.tgz", "--data-root")
    folder = write_ptb(tmp_path)
    (folder / "ptb.valid.txt").unlink()
    refusal(tmp_path, "lacks ptb.valid.txt")


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda raw: raw[:-7], "ends in the middle of a line: it looks truncated"),
        (lambda raw: gzip.compress(raw), "is gzip-compressed: gunzip it first"),
        (lambda raw: b"\xff\xfe" + raw, "is not UTF-8 text"),
        (lambda raw: b"", "is empty"),
        (lambda raw: raw.replace(b"\n", b" <eos>\n"), "already holds <eos> tokens"),
        (lambda raw: b" = Robert Boulter = \n" + raw, "line 1 has the upper-case word 'Robert'"),
    ],
)
def test_truncated_or_foreign_ptb_files_are_refused_in_one_line(tmp_path, damage, problem):
    folder = write_ptb(tmp_path)
    train = folder / PTB.filenames["train"]
    train.write_bytes(damage(train.read_bytes()))
    refusal(tmp_path, str(train), problem, "head -n")


def test_ptb_in_place_of_wikitext_is_refused(tmp_path):
    write_corpus(tmp_path, WT2, {split: [" the cat", "a dog"] for split in ("train", "valid", "test")})
    refusal(tmp_path, "line 2 has a line that does not start with a space", dataset="wt2")


def test_more_words_than_the_corpus_has_is_refused(tmp_path):
    words = [f"w{index}" for index in range(PTB.vocabulary_size)]
    write_corpus(tmp_path, PTB, {"train": [" " + " ".join(words)], "valid": [" w1"], "test": [" w2"]})
    refusal(tmp_path, "10,001 distinct words", "more than Penn Treebank's 10,000")


# --- batchify and windows -------------------------------------------------------------------------------------


def corpus_of(tokens: int, seed: int = 0) -> TextCorpus:
    ids = torch.arange(tokens).numpy()
    return TextCorpus(
        [str(index) for index in range(tokens)],
        {"train": ids, "valid": ids, "test": ids},
        CPU,
        torch.Generator().manual_seed(seed),
    )


def test_batchify_cuts_columns_of_contiguous_text_and_caps_examples():
    corpus = corpus_of(100)
    rows = corpus.batchify("train", None, 3)
    assert rows.shape == (33, 3)
    assert rows[:, 1].tolist() == list(range(33, 66))  # a column is one stretch of text; token 99 is cut
    assert corpus.batchify("train", 20, 4).shape == (5, 4)


@settings(max_examples=40, deadline=None)
@given(
    tokens=st.integers(30, 400),
    batch=st.integers(1, 4),
    bptt=st.integers(1, 40),
    std=st.sampled_from([0.0, 5.0]),
    delta=st.integers(0, 20),
    seed=st.integers(0, 2**16),
)
def test_training_windows_tile_the_rows_as_awd_lstm_walks_them(tokens, batch, bptt, std, delta, seed):
    corpus = corpus_of(tokens, seed)
    rows = corpus.batchify("train", None, batch)  # at least 7 rows
    batches = list(corpus.training_batches("train", None, batch, bptt, std, delta))
    start = 0
    for window in batches:
        assert window.start == start
        assert min(MIN_WINDOW, bptt + delta) <= window.drawn_length <= bptt + delta
        assert len(window.inputs) == min(window.drawn_length, len(rows) - 1 - start) >= 1
        assert torch.equal(window.targets, rows[start + 1 : start + 1 + len(window.inputs)])
        assert torch.equal(window.inputs, rows[start : start + len(window.inputs)])
        start += window.drawn_length
    assert batches[-1].start < len(rows) - 2 <= start  # AWD-LSTM: while i < len(rows) - 2


def test_window_lengths_follow_the_recipe_and_the_seed():
    rows = torch.zeros(200_000, 1, dtype=torch.long)

    def lengths(std: float, seed: int) -> list[int]:
        return [
            window.drawn_length
            for window in VariableLengthBatches(rows, 35, std, 20, torch.Generator().manual_seed(seed))
        ]

    search = lengths(0.0, 0)
    assert set(search) == {35, 17}  # bptt, or int(bptt / 2) with probability 0.05
    assert 0.03 < search.count(17) / len(search) < 0.07
    evaluation = lengths(5.0, 0)
    wide = lengths(50.0, 0)
    assert min(wide) == 5 and max(wide) == 55  # kept within [5, bptt + max_seq_len_delta]
    assert 33.0 < sum(evaluation) / len(evaluation) < 35.0  # N(35, 5) mostly; truncation lowers the mean by ~0.5
    assert lengths(5.0, 0) == evaluation and lengths(5.0, 1) != evaluation


def test_evaluation_windows_predict_every_token_once():
    corpus = corpus_of(103)
    batches = corpus.evaluation_batches("valid", None, 10, 4)
    assert isinstance(batches, FixedLengthBatches) and len(batches) == 3  # 10 rows: windows of 4, 4, 1
    targets = torch.cat([window.targets for window in batches])
    assert torch.equal(targets, batches.rows[1:]) and targets.numel() == batches.tokens == 90


def test_too_few_rows_is_one_line():
    corpus = corpus_of(10)
    with pytest.raises(UserError, match="holds 2 rows of 5 tokens; it needs at least 3"):
        corpus.training_batches("train", None, 5, 35, 5.0, 20)


def test_smoke_budget_caps_tokens_not_the_vocabulary():
    protocol = load_protocol("darts", "ptb")
    get_budget("smoke").apply(protocol)
    evaluate = protocol.phase("evaluate")
    # 1,024 / 50,000 of the training tokens and 1,000 / 10,000 of valid and test, as the image caps keep of CIFAR-10
    assert (evaluate.train_examples, evaluate.valid_examples, evaluate.test_examples) == (19_038, 7_376, 8_243)
    assert evaluate.hidden_size == 425 and evaluate.epochs == 3 and evaluate.batch_size == 32


# --- the genuine corpora ----------------------------------------------------------------------------------------

needs_genuine_ptb = pytest.mark.skipif(not genuine_ptb_available(), reason="shared/data/ptb is not on this machine")


@needs_genuine_ptb
def test_genuine_ptb_is_official_with_the_published_sizes(tmp_path):
    copy_genuine_ptb(tmp_path)
    source = resolve(request(tmp_path, allow_unofficial=False))
    description = source.description
    assert description["official"] is True and not source.notices
    assert description["vocabulary_size"] == PTB.vocabulary_size and description["words_outside_train"] == 0
    sizes = (description["train_examples"], description["valid_examples"], description["test_examples"])
    protocol = load_protocol("darts", "ptb").phase("evaluate")
    assert (
        sizes == (929_589, 73_760, 82_430) == (protocol.train_examples, protocol.valid_examples, protocol.test_examples)
    )
    corpus = source.load(CPU, torch.Generator())
    assert corpus.words(corpus.tokens["train"][:4]) == ["aer", "banknote", "berlitz", "calloway"]


@needs_genuine_ptb
def test_a_slice_of_genuine_ptb_loads_as_unofficial(tmp_path):
    copy_genuine_ptb(tmp_path, lines=300)
    refusal(tmp_path, "is not the official Penn Treebank file", allow_unofficial=False)
    assert resolve(request(tmp_path)).description["train_examples"] > 6000


@pytest.mark.skipif(not (SHARED_DATA / "wikitext-2").is_dir(), reason="shared/data/wikitext-2 is not on this machine")
@pytest.mark.parametrize("split", ["valid", "test"])
def test_wikitext_checksums_match_the_genuine_files(split):
    path = SHARED_DATA / "wikitext-2" / WT2.filenames[split]
    assert hashlib.sha1(path.read_bytes()).hexdigest() == WT2.checksums[split]
