import csv

from avsr.utils.csv_logger import ResumableCSVLogger


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_resumed_logger_appends_and_widens_header(tmp_path):
    first = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    first.log_metrics({"train/loss": 3.0}, step=1)
    first.log_metrics({"train/loss": 2.0}, step=2)
    first.save()
    path = tmp_path / "csv" / "metrics.csv"
    assert len(_rows(path)) == 2

    # a second attempt in the same folder (what ckpt_path=last does) keeps the first rows
    second = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    second.log_metrics({"train/loss": 1.0}, step=3)
    second.log_metrics({"val/wer": 0.5, "train/loss": 0.9}, step=4)
    second.save()
    rows = _rows(path)
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["train/loss"] == "3.0" and rows[3]["val/wer"] == "0.5"
    assert rows[0]["val/wer"] == ""
