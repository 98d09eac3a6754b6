"""CLINC150 (Larson et al. 2019) as CSV files with columns `text,category`; out-of-scope rows carry `oos`.

    .venv/bin/python data/clinc150/convert.py PATH/TO/data_full.json

train.csv: the 15,000 in-scope training rows (the out-of-scope training rows are left out: the model is
trained on in-scope data only and out-of-scope is decided by a confidence threshold, the paper's
"oos-threshold" setting). validation.csv: 3,000 in-scope + 100 out-of-scope (picks the threshold).
test.csv: 4,500 in-scope + 1,000 out-of-scope (reported once).
"""

import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(src: str) -> None:
    data = json.loads(Path(src).read_text(encoding="utf-8"))
    splits = {"train": data["train"], "validation": data["val"] + data["oos_val"], "test": data["test"] + data["oos_test"]}
    for name, rows in splits.items():
        with open(HERE / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "category"])
            w.writerows(rows)
        print(f"{name}.csv: {len(rows)} rows")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE.parents[2] / "shared" / "datasets" / "clinc150" / "data_full.json"))
