"""The stages on their own: small inline data, no DVC, no Prefect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mltoy import pipeline
from mltoy.params import Params, ParamsError, load_params, parse_params

PARAMS = {
    "split": {"test_size": 0.3, "random_state": 42},
    "preprocess": {"standardize": True},
    "train": {"C": 0.1, "max_iter": 200},
}


def iris_like(n_per_class: int = 20) -> pd.DataFrame:
    """Three well-separated classes, `n_per_class` rows each, deterministic."""
    rows = []
    for k, name in enumerate(["setosa", "versicolor", "virginica"]):
        for i in range(n_per_class):
            jitter = (i % 5) * 0.1
            rows.append([1.0 + 3 * k + jitter, 2.0 + jitter, 1.0 + 2 * k, 0.1 + k + jitter, name])
    return pd.DataFrame(rows, columns=pipeline.COLUMNS)


@pytest.fixture
def params() -> Params:
    return parse_params(PARAMS)


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / "raw.csv"
    iris_like().to_csv(path, index=False)
    return path


def run_stages(tmp_path, raw, params, tag: str) -> dict[str, bytes]:
    out = tmp_path / tag
    pipeline.stage_prepare(raw, out / "train.csv", out / "test.csv", params)
    pipeline.stage_train(out / "train.csv", out / "model.joblib", params)
    pipeline.stage_evaluate(out / "test.csv", out / "model.joblib", out / "metrics.json", out / "pred.csv")
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_split_is_stratified_and_sized(params):
    df = iris_like(20)
    train, test = pipeline.split(df, params.split)
    assert (len(train), len(test)) == (42, 18)
    assert test[pipeline.LABEL].value_counts().to_dict() == {"setosa": 6, "versicolor": 6, "virginica": 6}
    assert set(pd.concat([train, test]).itertuples(index=False)) == set(df.itertuples(index=False))


def test_stages_are_deterministic_byte_for_byte(tmp_path, raw, params):
    first = run_stages(tmp_path, raw, params, "a")
    second = run_stages(tmp_path, raw, params, "b")
    assert first == second
    assert set(first) == {"metrics.json", "model.joblib", "pred.csv", "test.csv", "train.csv"}


def test_metrics_are_in_range_and_stably_formatted(tmp_path, raw, params):
    outputs = run_stages(tmp_path, raw, params, "a")
    metrics = json.loads(outputs["metrics.json"])
    assert set(metrics) == {"accuracy", "f1_macro"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert outputs["metrics.json"].decode() == pipeline.format_metrics(metrics)
    predictions = pd.read_csv(tmp_path / "a" / "pred.csv")
    assert list(predictions.columns) == ["actual", "predicted"] and len(predictions) == 18


def test_standardize_flag_changes_the_model(params):
    train, _ = pipeline.split(iris_like(), params.split)
    scaled = pipeline.fit(train, params.preprocess, params.train)
    plain = pipeline.fit(train, params.preprocess.model_copy(update={"standardize": False}), params.train)
    assert [name for name, _ in scaled.steps] == ["scale", "clf"]
    assert [name for name, _ in plain.steps] == ["clf"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("split: [", "YAML syntax error at line 1"),
        ("split: {test_size: 0.3}\n", "split.random_state: missing"),
        ("split: {test_size: 1.5, random_state: 1}\n", "split.test_size: input should be less than 1 (got 1.5)"),
        ("train: {C: 0, max_iter: 5}\n", "train.C: input should be greater than 0 (got 0)"),
        ("train: {C: '0.1', max_iter: 5}\n", "train.C: input should be a valid number"),
        ("train: {C: 0.1, max_iter: 0}\n", "train.max_iter: input should be greater than or equal to 1"),
        ("train: {C: 0.1, max_iterr: 5}\n", "train.max_iterr: unknown key (allowed: C, max_iter)"),
    ],
)
def test_bad_params_give_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    try:
        override = yaml.safe_load(text)
    except yaml.YAMLError:
        override = None
    path.write_text(text if override is None else yaml.safe_dump({**PARAMS, **override}))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="params.yaml: params file not found"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("a,b\n1,2\n", "missing columns"),
        ("sepal_length,sepal_width,petal_length,petal_width,species,extra\n", "unexpected columns ['extra']"),
        ("sepal_length,sepal_width,petal_length,petal_width,species\n", "no data rows"),
        ("sepal_length,sepal_width,petal_length,petal_width,species\n1,2,x,4,setosa\n", "line 2, column 'petal_length': expected a number, got 'x'"),
        ("sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,4,setosa\n1,,3,4,setosa\n", "line 3, column 'sepal_width'"),
        ("sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,4,\n", "line 2, column 'species': missing label"),
    ],
)
def test_bad_csv_gives_a_clear_error(tmp_path, params, content, message):
    raw = tmp_path / "iris.csv"
    raw.write_text(content)
    with pytest.raises(pipeline.DataError) as err:
        pipeline.stage_prepare(raw, tmp_path / "train.csv", tmp_path / "test.csv", params)
    assert str(err.value).startswith(f"{raw}: ") and message in str(err.value)
    assert not (tmp_path / "train.csv").exists()


def test_single_class_and_too_few_rows(tmp_path, params):
    raw = tmp_path / "iris.csv"
    iris_like(10).query("species == 'setosa'").to_csv(raw, index=False)
    with pytest.raises(pipeline.DataError, match="single class"):
        pipeline.stage_prepare(raw, tmp_path / "a.csv", tmp_path / "b.csv", params)
    iris_like(1).to_csv(raw, index=False)
    with pytest.raises(pipeline.DataError, match="too few rows"):
        pipeline.stage_prepare(raw, tmp_path / "a.csv", tmp_path / "b.csv", params)


def test_missing_raw_file_says_how_to_restore_it(tmp_path, params):
    with pytest.raises(pipeline.DataError, match=r"iris.csv: file not found; run `make data`"):
        pipeline.stage_prepare(tmp_path / "iris.csv", tmp_path / "a.csv", tmp_path / "b.csv", params)


def test_failed_write_keeps_the_previous_output(tmp_path):
    out = tmp_path / "metrics.json"
    out.write_text("previous")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        pipeline._write_atomic(out, broken)
    assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_cli_runs_the_stages_and_reports_errors(tmp_path, raw):
    (tmp_path / "params.yaml").write_text(json.dumps(PARAMS))  # JSON is YAML
    cli = [sys.executable, "-m", "mltoy.cli"]
    env = {**os.environ, "PYTHONPATH": str(Path(pipeline.__file__).parent.parent)}
    run = lambda *a: subprocess.run([*cli, *a], cwd=tmp_path, env=env, capture_output=True, text=True)  # noqa: E731
    assert run("prepare", "--raw", str(raw), "--train", "tr.csv", "--test", "te.csv").returncode == 0
    assert run("train", "--train", "tr.csv", "--model", "m.joblib").returncode == 0
    done = run("evaluate", "--test", "te.csv", "--model", "m.joblib", "--metrics", "m.json", "--predictions", "p.csv")
    assert done.returncode == 0 and json.loads((tmp_path / "m.json").read_text())["accuracy"] > 0.5
    bad = run("train", "--train", "tr.csv", "--model", "m.joblib", "--params", "nope.yaml")
    assert bad.returncode == 1
    assert bad.stderr == "error: nope.yaml: params file not found\n"
