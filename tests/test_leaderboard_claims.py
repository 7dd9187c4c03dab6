"""The paper-claims registry: complete for the mission, honest about gaps, strict about format."""

import csv

import pytest

from nasbench_repro import catalog
from nasbench_repro.leaderboard.aggregate import primary_metric
from nasbench_repro.leaderboard.claims import CLAIMS_FILE, COLUMNS, ClaimsError, load_claims


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def test_every_mission_method_and_dataset_has_a_headline_claim(claims):
    for info in catalog.MISSION_METHODS:
        for dataset in catalog.MISSION_DATASETS:
            variants = claims.headline_variants(info.name, dataset)
            assert any(claims.find(info.name, variant, dataset, primary_metric(dataset)) for variant in variants), (
                info.name,
                dataset,
            )


def test_published_numbers_keep_their_spread_cost_convention_and_source(claims):
    second_order = claims.find("darts", "2nd order", "cifar10", "test_error_pct")
    assert (second_order.display(), second_order.verified) == ("2.76 ± 0.09", True)
    assert "10 independent evaluation runs" in second_order.obtained and "Table 1" in second_order.source
    cost = claims.find("darts", "1st order", "cifar10", "search_gpu_days")
    assert cost.value == 1.5 and "4 search runs" in cost.obtained and "1080Ti" in cost.gpu
    assert claims.find("pcdarts", "K=4, EN", "cifar10", "test_error_pct").display() == "2.57 ± 0.07"
    assert claims.find("pcdarts", "K=2, EN", "imagenet", "search_gpu_days").value == 3.8
    assert claims.find("darts", "2nd order", "imagenet", "test_top5_error_pct").value == 8.7


def test_unknown_numbers_stay_blank_with_a_reason(claims):
    for variant in ("K=1, EN", "K=2, EN", "K=8, EN", "K=1, no EN"):
        claim = claims.find("pcdarts", variant, "cifar10", "test_error_pct")
        assert claim.value is None and "not recovered" in claim.notes and not claim.verified
    for claim in claims.all:
        assert claim.value is not None or claim.notes, claim.id
    grid = [claim for claim in claims.all if claim.method == "grid"]
    assert len(grid) == len(catalog.MISSION_DATASETS)
    assert all(claim.value is None and "no paper" in claim.notes for claim in grid)


def test_secondary_only_numbers_are_unverified(claims):
    for claim in claims.all:
        if claim.method == "nasp" or claim.source.startswith("secondary"):
            assert not claim.verified, claim.id
    assert claims.find("pcdarts", "K=4, EN", "cifar10", "memory_gb").display() == "<4"
    assert not claims.find("pcdarts", "K=4, EN", "cifar10", "memory_gb").comparable


def _write(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


GOOD = {
    "method": "darts",
    "variant": "2nd order",
    "genotype": "DARTS_V2",
    "dataset": "cifar10",
    "metric": "test_error_pct",
    "value": "2.76",
    "spread": "0.09",
    "gpu": "",
    "obtained": "mean of 10",
    "source": "DARTS Table 1",
    "verified": "yes",
    "headline": "yes",
    "notes": "",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "darts-x"}, "not a mission method"),
        ({"dataset": "cifar100"}, "not a mission dataset"),
        ({"metric": "accuracy"}, "metric 'accuracy'"),
        ({"value": "2.7six"}, "not a number"),
        ({"value": "", "spread": ""}, "blank value needs a note"),
        ({"spread": "-1"}, "spread"),
        ({"verified": "maybe"}, "verified must be yes or no"),
        ({"source": ""}, "source is empty"),
    ],
)
def test_a_malformed_claims_file_is_one_line_naming_the_line(tmp_path, change, message):
    path = tmp_path / "claims.csv"
    _write(path, [GOOD, {**GOOD, "headline": "no", **change}])
    with pytest.raises(ClaimsError, match=message) as raised:
        load_claims(path)
    text = str(raised.value)
    assert "\n" not in text and f"{path} line 3" in text


@pytest.mark.parametrize("other", [{}, {"method": "pcdarts", "variant": "K=4, EN"}])
def test_two_headlines_for_one_number_or_one_cell_are_rejected(tmp_path, other):
    path = tmp_path / "claims.csv"
    _write(path, [GOOD, {**GOOD, **other}])
    with pytest.raises(ClaimsError, match="both the headline"):
        load_claims(path)


def test_an_evaluation_of_a_published_cell_is_matched_by_the_cell(claims):
    assert claims.find("darts", "transferred cell", "imagenet", "test_error_pct", "DARTS_V2").value == 26.7
    assert claims.find("pcdarts", "K=2, EN", "cifar10", "test_error_pct", "DARTS_V2").display() == "2.76 ± 0.09"
    assert claims.find("pcdarts", "K=2, EN", "imagenet", "test_error_pct", "PC_DARTS_cifar").value == 25.1
    assert claims.find("darts", "transferred cell", "cifar10", "test_error_pct", "my_cell.json") is None


def test_a_wrong_header_is_rejected(tmp_path):
    path = tmp_path / "claims.csv"
    path.write_text("method,value\ndarts,2.76\n")
    with pytest.raises(ClaimsError, match="header"):
        load_claims(path)


def test_the_packaged_file_is_the_default():
    assert CLAIMS_FILE.name == "claims.csv" and CLAIMS_FILE.exists()
