import json

from detection import evaluate


def test_evaluate_cli_at_a_smaller_input_size_reports_accuracy_and_speed(trained_detector, tmp_path):
    metrics = evaluate.main(["--bundle", str(trained_detector / "bundle"), "--dataset", "deepfashion2",
                             "--data", str(trained_detector / "df2"), "--split", "val", "--min-size", "96",
                             "--out", str(tmp_path / "eval")])
    # The longer-side limit follows the shorter side (bundle: 128/160), so the override really applies.
    assert metrics["input_size"] == {"min_size": 96, "max_size": 120}
    assert metrics["images"] == 2 and metrics["detect_ms_median"] > 0
    assert 0 <= metrics["box_AP"] <= 1 and 0 <= metrics["mask_AP"] <= 1
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["input_size"]["min_size"] == 96
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "shorter side 96" in report and "| box_AP |" in report
    assert (tmp_path / "eval" / "predictions.png").stat().st_size > 0
