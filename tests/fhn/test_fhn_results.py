"""The shipped paper numbers (fhn/results/*.json) are results files with run.py's metric names."""
import glob
import os

import pytest

from common.results import read_results

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = sorted(glob.glob(os.path.join(REPO, "fhn", "results", "*.json")))
METRICS = {"mean_auc", "mean_auc_binary", "average_ndcg", "average_ndcg_binary", "fitb_acc", "accuracy",
           "binary"}


def test_results_files_are_shipped():
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_results_file_uses_out_json_names_and_cites_its_source(path):
    data = read_results(path)
    source = data["source"]
    assert source["paper"] and source["dataset"] and source["split"] and source["model"]
    metrics = set(data) - {"schema_version", "source"}
    assert metrics <= METRICS
    if source.get("status") == "number not found":
        assert not metrics
    else:
        assert metrics and all(0 < data[m] < 1 for m in metrics) and source["table"]
