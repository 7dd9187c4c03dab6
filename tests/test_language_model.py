"""The language-model evaluation: AWD-LSTM's SGD → ASGD switch, perplexity, and runs of rnn:DARTS_V2
through the runner (determinism, resume, records, the genotype the dataset asks for)."""

from __future__ import annotations

import math

import pytest
import torch
from text_files import write_ptb, write_wt2

from nasbench_repro import language_model, records
from nasbench_repro.cli import main
from nasbench_repro.data.text import FixedLengthBatches
from nasbench_repro.language_model import SgdThenAsgd, evaluate_language_model, language_model_loss
from nasbench_repro.protocol import PhaseProtocol
from nasbench_repro.runner import Paths, execute
from nasbench_repro.spaces.genotypes import resolve_genotype
from nasbench_repro.spaces.rnn.model import evaluation_model
from nasbench_repro.spec import RunSpec

SMALL = {"evaluate.hidden_size": 16}  # the paper's 850 would make every test step seconds long on a CPU


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs", data_root=tmp_path / "data")


def run(paths: Paths, dataset: str = "ptb", seed: int = 0, overrides: dict | None = None, resume: str | None = None):
    spec = RunSpec(
        method="darts",
        dataset=dataset,
        phase="evaluate",
        seed=seed,
        budget="smoke",
        overrides={**SMALL, **(overrides or {})},
        genotype="DARTS_V2",
        allow_unofficial_data=True,
    )
    outcome = execute(None if resume else spec, paths, resume=resume, notify=lambda line: None)
    return outcome, records.read_record(outcome.record_path)


def reproducible_part(record: dict) -> dict:
    return {key: record[key] for key in ("metrics", "curves", "genotype", "protocol", "variant", "dataset", "budget")}


# --- SGD, then averaged SGD -------------------------------------------------------------------------------------


def test_asgd_starts_when_validation_is_worse_than_the_best_before_the_last_nonmono_epochs():
    optimizer = SgdThenAsgd([torch.nn.Parameter(torch.zeros(2))], lr=20.0, weight_decay=0.0, nonmono=2)
    # DARTS: switch if len(history) > nonmono and loss > min(history[:-nonmono]), then record the loss
    assert [optimizer.after_validation(loss) for loss in (5.0, 4.0, 3.0, 4.5)] == [False] * 4  # 4.5 < min([5])
    assert optimizer.after_validation(4.2) is True  # 4.2 > min([5, 4])
    assert optimizer.averaging and isinstance(optimizer.optimizer, torch.optim.ASGD)
    assert optimizer.after_validation(99.0) is False and optimizer.history == [5.0, 4.0, 3.0, 4.5, 4.2]


def test_gdas_trigger_compares_with_every_earlier_sgd_epoch():
    optimizer = SgdThenAsgd(
        [torch.nn.Parameter(torch.zeros(2))], lr=20.0, weight_decay=0.0, nonmono=2, trigger="best_so_far"
    )
    # GDAS: switch if len(history) > nonmono and loss > min(history); 4.5 > min([5, 4, 3]) already switches
    assert [optimizer.after_validation(loss) for loss in (5.0, 4.0, 3.0)] == [False] * 3
    assert optimizer.after_validation(4.5) is True and optimizer.averaging


def test_averaged_weights_are_swapped_in_for_evaluation_and_back():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = SgdThenAsgd([parameter], lr=1.0, weight_decay=0.0, nonmono=1)
    with optimizer.averaged_weights():  # SGD: nothing to swap
        assert parameter.item() == 0.0
    for loss in (1.0, 0.5, 2.0):
        optimizer.after_validation(loss)
    assert optimizer.averaging
    # weights 1, 4, 6; torch's ASGD (as the PyTorch 0.4 one DARTS ran) averages from its second step: (4 + 6) / 2
    for gradient in (-1.0, -3.0, -2.0):
        parameter.grad = torch.tensor([gradient])
        optimizer.step()
    with optimizer.averaged_weights():
        assert parameter.item() == pytest.approx(5.0)
    assert parameter.item() == pytest.approx(6.0)


def test_step_scales_the_learning_rate_for_one_step_only():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = SgdThenAsgd([parameter], lr=20.0, weight_decay=0.0, nonmono=5)
    parameter.grad = torch.ones(1)
    optimizer.step(17 / 35)
    assert parameter.item() == pytest.approx(-20.0 * 17 / 35)
    assert optimizer.optimizer.param_groups[0]["lr"] == 20.0


def test_state_round_trips_across_the_switch():
    parameters = [torch.nn.Parameter(torch.ones(3))]
    optimizer = SgdThenAsgd(parameters, lr=0.1, weight_decay=1e-3, nonmono=1)
    for loss in (1.0, 0.5, 2.0):
        optimizer.after_validation(loss)
    parameters[0].grad = torch.ones(3)
    optimizer.step()
    restored = SgdThenAsgd(parameters, lr=0.1, weight_decay=1e-3, nonmono=1)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.averaging and restored.history == optimizer.history
    assert torch.equal(restored.optimizer.state[parameters[0]]["ax"], optimizer.optimizer.state[parameters[0]]["ax"])


# --- loss and perplexity ----------------------------------------------------------------------------------------


def test_temporal_activation_regularization_penalizes_state_changes():
    model = evaluation_model(resolve_genotype("DARTS_V2", "rnn"), 20, 8)
    tokens, targets = torch.randint(0, 20, (6, 2)), torch.randint(0, 20, (6, 2))
    output = model(tokens, model.initial_hidden(2))
    plain = PhaseProtocol("evaluate", {"activation_regularization": 0.0, "temporal_activation_regularization": 0.0})
    tar = PhaseProtocol("evaluate", {"activation_regularization": 0.0, "temporal_activation_regularization": 0.5})
    loss, cross_entropy = language_model_loss(output, targets, plain)
    assert torch.equal(loss, cross_entropy)
    loss, _ = language_model_loss(output, targets, tar)
    expected = 0.5 * (output.states[1:] - output.states[:-1]).pow(2).mean()
    torch.testing.assert_close(loss - cross_entropy, expected)


def test_windowed_evaluation_equals_one_pass_over_the_whole_stream():
    """The state carries across windows, so the window length changes nothing; the mean is per token."""
    model = evaluation_model(resolve_genotype("DARTS_V2", "rnn"), 20, 8).eval()
    rows = torch.randint(0, 20, (23, 3))
    windowed = evaluate_language_model(model, FixedLengthBatches(rows, 4), model.initial_hidden(3))
    whole = evaluate_language_model(model, FixedLengthBatches(rows, 100), model.initial_hidden(3))
    assert windowed["tokens"] == whole["tokens"] == 22 * 3
    assert windowed["loss"] == pytest.approx(whole["loss"], rel=1e-6)  # float32 sums in another order
    assert windowed["ppl"] == pytest.approx(math.exp(windowed["loss"]))


# --- runs through the runner ------------------------------------------------------------------------------------


def test_same_seed_gives_identical_records_and_another_seed_does_not(paths):
    write_ptb(paths.data_root)
    _, first = run(paths, seed=3)
    _, second = run(paths, seed=3)
    _, other = run(paths, seed=4)
    assert first["status"] == second["status"] == other["status"] == "complete"
    assert reproducible_part(first) == reproducible_part(second)
    assert first["curves"] != other["curves"]


def test_record_holds_perplexity_parameters_and_the_smoke_label(paths):
    write_ptb(paths.data_root)
    outcome, record = run(paths)
    assert outcome.record_path.parent == paths.results_dir / "darts" / "ptb" / "smoke"
    assert record["budget"] == "smoke" and record["dataset"] == "ptb" and record["variant"] == "given cell"
    assert record["genotype"] == resolve_genotype("DARTS_V2", "rnn").to_dict()
    metrics = record["metrics"]
    vocabulary = record["data"]["vocabulary_size"]
    assert round(metrics["params_millions"] * 1e6) == vocabulary * 16 + vocabulary + 32 * 32 + 8 * 16 * 32
    assert metrics["test_ppl"] > 1
    assert metrics["valid_ppl"] == min(row["valid_ppl"] for row in record["curves"]["evaluate"])
    assert metrics["selected_epoch"] in (0, 1, 2) and metrics["test_examples"] > 0
    assert [row["epoch"] for row in record["curves"]["evaluate"]] == [0, 1, 2]
    assert record["protocol"]["changed"]["evaluate"]["train_examples"] == "budget:smoke"
    assert record["cost"]["evaluate"]["gpu_days"] > 0


def test_interrupt_then_resume_equals_uninterrupted(paths, monkeypatch):
    write_ptb(paths.data_root)
    _, uninterrupted = run(paths, seed=5)
    train_epoch = language_model.LanguageModelTraining.train_epoch
    epochs_begun = []

    def interrupted_at_epoch_2(training):
        epochs_begun.append(len(epochs_begun))
        if len(epochs_begun) == 3:
            raise KeyboardInterrupt
        return train_epoch(training)

    monkeypatch.setattr(language_model.LanguageModelTraining, "train_epoch", interrupted_at_epoch_2)
    outcome, interrupted = run(paths, seed=5)
    assert interrupted["status"] == "interrupted"
    monkeypatch.setattr(language_model.LanguageModelTraining, "train_epoch", train_epoch)
    _, resumed = run(paths, resume=outcome.run_id)
    assert resumed["status"] == "complete" and resumed["cost"]["evaluate"]["resumed_from_epoch"] == 2
    assert reproducible_part(resumed) == reproducible_part(uninterrupted)


def test_wikitext_runs_the_transferred_cell(paths):
    write_wt2(paths.data_root)
    _, record = run(paths, dataset="wt2")
    assert record["status"] == "complete" and record["dataset"] == "wt2"
    assert record["protocol"]["values"]["evaluate"]["hidden_dropout"] == 0.15
    assert record["metrics"]["test_ppl"] > 1


def test_a_cnn_cell_on_text_is_one_line_and_exit_2(paths, capsys):
    write_ptb(paths.data_root)
    code = main(
        [
            "run",
            "darts",
            "--dataset",
            "ptb",
            "--phase",
            "evaluate",
            "--genotype",
            "PC_DARTS_cifar",
            "--budget",
            "smoke",
            "--allow-unofficial-data",
            "--data-root",
            str(paths.data_root),
            "--results-dir",
            str(paths.results_dir),
            "--runs-dir",
            str(paths.runs_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is a CNN cell, but an RNN one is needed here" in err
    assert len(err.strip().splitlines()) == 1


def test_a_truncated_corpus_is_one_line_and_exit_2(paths, capsys):
    train = write_ptb(paths.data_root) / "ptb.train.txt"
    train.write_bytes(train.read_bytes()[:-3])
    code = main(
        [
            "run",
            "darts",
            "--dataset",
            "ptb",
            "--phase",
            "evaluate",
            "--genotype",
            "DARTS_V2",
            "--budget",
            "smoke",
            "--allow-unofficial-data",
            "--data-root",
            str(paths.data_root),
            "--results-dir",
            str(paths.results_dir),
            "--runs-dir",
            str(paths.runs_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "looks truncated" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not paths.results_dir.exists()
