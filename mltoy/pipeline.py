"""The three stages of the toy pipeline: iris -> prepare -> train -> evaluate.

Each stage is a pure core on values (`split`, `fit`, `score`) and a thin `stage_*` wrapper that
reads and writes files. Every path comes in as an argument; nothing here knows DVC or Prefect.
Outputs are written atomically, so a stage that fails or is killed leaves the last good ones.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mltoy.data import FEATURES, LABEL, DataError, read_dataset, read_raw
from mltoy.files import write_atomic
from mltoy.params import Params, PreprocessParams, SplitParams, TrainParams

# This module imports pandas and scikit-learn (a second or two): only what runs a stage imports it
# (mltoy/stages.py names the functions by module and name). A sweep imports it once, in the
# process its stage runs are forked from.

# Same data and params, same model bytes on every CPU. A float's last digits depend on the order a
# BLAS kernel adds in, which differs between CPUs, and an optimizer that stops early carries those
# differences into the model: with lbfgs, four x86 OpenBLAS kernels gave four model md5s, and
# unscaled features with a large C gave coefficients 10% apart. So the fit is solved to its
# optimum (Newton's method, unique for an L2-penalised logistic regression; kernels then agree to
# about 1e-11) and the stored model keeps each fitted number to 6 significant digits: the same
# bytes everywhere, and no prediction moves (a sample would have to lie within 1e-6 of the
# decision boundary).
SIGNIFICANT_DIGITS = 6
SOLVER_TOL = 1e-8

# --- pure cores -------------------------------------------------------------------------------


def split(df: pd.DataFrame, p: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified train/test split, deterministic for a given random_state."""
    train, test = train_test_split(
        df, test_size=p.test_size, random_state=p.random_state, stratify=df[LABEL]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def fit(train: pd.DataFrame, pre: PreprocessParams, p: TrainParams) -> Pipeline:
    steps = [("scale", StandardScaler())] if pre.standardize else []
    clf = LogisticRegression(C=p.C, max_iter=p.max_iter, solver="newton-cholesky", tol=SOLVER_TOL)
    steps.append(("clf", clf))
    return Pipeline(steps).fit(train[FEATURES], train[LABEL])


def canonical(model: Pipeline) -> Pipeline:
    """A copy of the fitted model with every fitted float rounded to SIGNIFICANT_DIGITS.

    Python's decimal formatting rounds correctly on every platform, so equal-to-the-last-digits
    inputs give equal outputs. Fitted attributes are sklearn's trailing-underscore ones.
    """
    model = copy.deepcopy(model)
    for _, step in model.steps:
        for name, value in vars(step).items():
            if name.endswith("_") and isinstance(value, np.ndarray) and value.dtype.kind == "f":
                rounded = [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in value.flat]
                setattr(step, name, np.array(rounded, dtype=value.dtype).reshape(value.shape))
    return model


def score(model: Pipeline, test: pd.DataFrame) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics and the per-row actual/predicted labels (for DVC's confusion-matrix plot)."""
    predicted = model.predict(test[FEATURES])
    metrics = {
        "accuracy": float(accuracy_score(test[LABEL], predicted)),
        "f1_macro": float(f1_score(test[LABEL], predicted, average="macro")),
    }
    return metrics, pd.DataFrame({"actual": test[LABEL], "predicted": predicted})


# --- stages: thin file I/O around the cores ---------------------------------------------------


def stage_prepare(raw_csv: Path, train_csv: Path, test_csv: Path, params: Params) -> None:
    train, test = split(read_raw(raw_csv, params.split), params.split)
    write_csv(train, train_csv)
    write_csv(test, test_csv)


def stage_train(train_csv: Path, model_path: Path, params: Params) -> None:
    model = fit(read_dataset(train_csv), params.preprocess, params.train)
    write_atomic(model_path, lambda tmp: joblib.dump(canonical(model), tmp))


def stage_evaluate(
    test_csv: Path, model_path: Path, metrics_path: Path, predictions_path: Path
) -> dict[str, float]:
    test = read_dataset(test_csv)
    try:
        model = joblib.load(model_path)
    except FileNotFoundError:
        raise DataError(f"{model_path}: model not found; run the train stage first") from None
    metrics, predictions = score(model, test)
    write_csv(predictions, predictions_path)
    write_atomic(metrics_path, lambda tmp: Path(tmp).write_text(format_metrics(metrics)))
    return metrics


# --- file I/O ---------------------------------------------------------------------------------


def format_metrics(metrics: dict[str, float]) -> str:
    """Stable formatting: same metrics, same bytes."""
    return json.dumps(metrics, indent=2, sort_keys=True) + "\n"


def write_csv(df: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: df.to_csv(tmp, index=False, lineterminator="\n"))
