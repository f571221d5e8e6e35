"""The stages on their own: small inline data, no DVC, no Prefect."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml

from mltoy import data, files, pipeline
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
    return pd.DataFrame(rows, columns=data.COLUMNS)


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
    assert test[data.LABEL].value_counts().to_dict() == {"setosa": 6, "versicolor": 6, "virginica": 6}
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
    with pytest.raises(data.DataError) as err:
        pipeline.stage_prepare(raw, tmp_path / "train.csv", tmp_path / "test.csv", params)
    assert str(err.value).startswith(f"{raw}: ") and message in str(err.value)
    assert not (tmp_path / "train.csv").exists()
    with pytest.raises(data.DataError) as chunked:  # the flows' check, a row at a time
        data.scan_raw(raw, chunk_rows=1)
    assert str(chunked.value) == str(err.value)


def test_a_scan_a_chunk_at_a_time_finds_what_reading_it_whole_does(tmp_path):
    raw = tmp_path / "iris.csv"
    iris_like(20).to_csv(raw, index=False)
    summary = data.scan_raw(raw, chunk_rows=7)
    whole = data.read_dataset(raw)
    assert summary.md5 == hashlib.md5(raw.read_bytes()).hexdigest()  # of the very bytes checked
    assert summary.rows == len(whole) and summary.classes == whole[data.LABEL].value_counts().to_dict()


def test_single_class_and_too_few_rows(tmp_path, params):
    raw = tmp_path / "iris.csv"
    iris_like(10).query("species == 'setosa'").to_csv(raw, index=False)
    with pytest.raises(data.DataError, match="single class"):
        pipeline.stage_prepare(raw, tmp_path / "a.csv", tmp_path / "b.csv", params)
    iris_like(1).to_csv(raw, index=False)
    with pytest.raises(data.DataError, match="too few rows"):
        pipeline.stage_prepare(raw, tmp_path / "a.csv", tmp_path / "b.csv", params)


def test_missing_raw_file_says_how_to_restore_it(tmp_path, params):
    with pytest.raises(data.DataError, match=r"iris.csv: file not found; run `make data`"):
        pipeline.stage_prepare(tmp_path / "iris.csv", tmp_path / "a.csv", tmp_path / "b.csv", params)


def test_failed_write_keeps_the_previous_output(tmp_path):
    out = tmp_path / "metrics.json"
    out.write_text("previous")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        files.write_atomic(out, broken)
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


def test_the_stored_model_keeps_six_significant_digits_so_last_bit_noise_is_gone(params):
    """What a different BLAS kernel changes (the last bits) vanishes; what it keeps is stated.

    The values are set by hand, so this holds on any machine."""
    import numpy as np

    train, _ = pipeline.split(iris_like(), params.split)
    model = pipeline.fit(train, params.preprocess, params.train)
    clf = model.named_steps["clf"]
    clf.coef_ = np.full(clf.coef_.shape, 0.123456789012)
    noisy = pipeline.canonical(model)
    clf.coef_ = np.nextafter(clf.coef_, 1.0)  # one ulp up: another kernel's answer
    assert clf.coef_[0, 0] != 0.123456789012
    other = pipeline.canonical(model)
    assert noisy.named_steps["clf"].coef_[0, 0] == 0.123457 == other.named_steps["clf"].coef_[0, 0]
    assert model.named_steps["clf"].coef_[0, 0] != 0.123457  # canonical works on a copy
    dump = lambda m: (lambda b: (joblib.dump(m, b), b.getvalue())[1])(io.BytesIO())  # noqa: E731
    assert dump(noisy) == dump(other)


def test_rounding_the_model_moves_no_prediction(params):
    test_rows = iris_like(30)
    train, _ = pipeline.split(iris_like(), params.split)
    for standardize in (True, False):
        pre = params.preprocess.model_copy(update={"standardize": standardize})
        model = pipeline.fit(train, pre, params.train)
        stored = pipeline.canonical(model)
        assert list(stored.predict(test_rows[data.FEATURES])) == list(model.predict(test_rows[data.FEATURES]))


KERNEL_NEEDS = {"Prescott": "sse3", "Sandybridge": "avx", "Haswell": "avx2", "SkylakeX": "avx512f"}


def test_every_openblas_kernel_this_cpu_runs_stores_the_same_model(tmp_path):
    """OPENBLAS_CORETYPE stands in for other machines: a model trained under each kernel this CPU
    supports has the same bytes, for the shipped params and for an ill-conditioned fit (unscaled
    features, large C), where an early-stopping optimizer gives visibly different coefficients."""
    flags = set()
    if Path("/proc/cpuinfo").is_file():
        flags = {f for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags") for f in line.split()}
    kernels = [k for k, flag in KERNEL_NEEDS.items() if flag in flags]
    if len(kernels) < 2:
        pytest.skip("not an x86 CPU with two OpenBLAS kernels to compare")
    hard = {**PARAMS, "preprocess": {"standardize": False}, "train": {"C": 10.0, "max_iter": 200}}
    script = (
        "import sys, hashlib; from pathlib import Path; from mltoy import pipeline; from mltoy.params import parse_params\n"
        "import json; configs = json.loads(sys.argv[2]); out = Path(sys.argv[1])\n"
        "for i, c in enumerate(configs):\n"
        "    p = parse_params(c)\n"
        "    pipeline.stage_prepare(out / 'raw.csv', out / f'tr{i}.csv', out / f'te{i}.csv', p)\n"
        "    pipeline.stage_train(out / f'tr{i}.csv', out / f'm{i}.joblib', p)\n"
        "    print(hashlib.md5((out / f'm{i}.joblib').read_bytes()).hexdigest())\n"
    )
    from sklearn.datasets import load_iris  # the real data: its unscaled fit is the ill-conditioned one

    iris = load_iris(as_frame=True)
    frame = iris.data.set_axis(data.FEATURES, axis=1).assign(species=iris.target_names[iris.target])
    frame.to_csv(tmp_path / "raw.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(Path(pipeline.__file__).parent.parent)}
    md5s = {}
    for kernel in kernels:
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), json.dumps([PARAMS, hard])],
                              env={**env, "OPENBLAS_CORETYPE": kernel}, capture_output=True, text=True, check=True)
        md5s[kernel] = proc.stdout.split()
    assert len({tuple(v) for v in md5s.values()}) == 1, md5s
