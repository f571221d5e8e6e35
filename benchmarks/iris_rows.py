"""An iris-shaped dataset of any size in place of the kit's, the same bytes for the same size and
seed: scikit-learn's iris rows drawn with replacement, each feature plus Gaussian noise, to 4
decimals, under the header of the file it replaces; written a chunk at a time, so memory does
not grow with the rows.

    python benchmarks/iris_rows.py ROWS data/raw/iris.csv [--seed 0]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris

CHUNK = 250_000
NOISE = 0.1


def write_rows(rows: int, out: Path, seed: int = 0) -> None:
    header = out.open().readline()  # sepal_length,...,species: the four features, then the label
    *features_names, label = header.strip().split(",")
    iris = load_iris()
    features, labels = iris.data, np.asarray(iris.target_names)[iris.target]
    rng = np.random.default_rng(seed)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="\n") as f:
        f.write(header)
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            drawn = rng.integers(0, len(features), n)
            noisy = np.maximum(features[drawn] + rng.normal(0.0, NOISE, (n, len(features_names))), 0.1)
            chunk = pd.DataFrame(np.round(noisy, 4), columns=features_names)
            chunk[label] = labels[drawn]
            chunk.to_csv(f, header=False, index=False, lineterminator="\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_rows(args.rows, args.out, args.seed)
