"""Bad input, faults and concurrency: a one-line error, a non-zero exit, and every earlier output
and dvc.lock byte for byte as they were."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import PY, free_port

KEPT = (
    "dvc.lock",
    "data/raw/iris.csv.dvc",
    "data/processed/train.csv",
    "data/processed/test.csv",
    "models/model.joblib",
    "reports/metrics.json",
    "reports/predictions.csv",
)
FLOWS = ("scripts/flow_dvc.py", "scripts/flow_stages.py", "scripts/flow_dvc_stages.py")
HEADER = "sepal_length,sepal_width,petal_length,petal_width,species\n"


def kept(repo) -> dict[str, object]:
    """What a failed run must leave as it was: the tracked files and outputs, byte for byte, and
    what DVC's cache holds (bad data recorded there would come back with `make data`)."""
    cache = repo.path / ".dvc" / "cache"
    return {**{p: repo.read(p) for p in KEPT},
            "DVC cache": sorted(str(f.relative_to(cache)) for f in cache.rglob("*") if f.is_file())}


def error_line(proc) -> str:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stdout
    return lines[0]


BAD_PARAMS = [
    ("test_size: 0.3", "test_size: 1.3", "split.test_size: input should be less than 1 (got 1.3)"),
    ("C: 0.1", "C: [", "YAML syntax error at line"),
    ("max_iter: 200", "max_iterr: 200", "train.max_iterr: unknown key (allowed: C, max_iter)"),
]
BAD_DATA = [
    (None, "iris.csv: file not found; run `make data` to restore it"),
    (HEADER + "5.1,3.5,oops,0.2,setosa\n", "iris.csv: line 2, column 'petal_length': expected a number, got 'oops'"),
    (HEADER + "5.1,3.5,1.4,0.2,setosa\n" * 20, "iris.csv: column 'species' has a single class ('setosa'); need 2+"),
    (HEADER + "5.1,3.5,1.4,0.2,setosa\n6.1,2.5,4.4,1.2,versicolor\n", "iris.csv: too few rows (2, smallest class 1)"),
]


def break_params(repo, case: int) -> None:
    old, new, _ = BAD_PARAMS[case]
    params = repo.path / "params.yaml"
    params.write_text(params.read_text().replace(old, new))


def break_data(repo, case: int) -> None:
    raw = repo.path / "data" / "raw" / "iris.csv"
    raw.unlink()
    if BAD_DATA[case][0] is not None:
        raw.write_text(BAD_DATA[case][0])


def test_the_check_before_dvc_rejects_everything_prepare_would(built_repo):
    """Options A and C check the inputs with the validation prepare itself runs (one function,
    not a copy): every kind of bad params and data, one line naming the file and the problem.
    Each kind is also covered on the schema and the stages alone (test_mltoy.py)."""
    from kit.tasks import check_inputs
    from mltoy import InputError

    params, raw = built_repo.path / "params.yaml", built_repo.path / "data" / "raw" / "iris.csv"
    good_params, good_raw = params.read_text(), raw.read_text()
    for case, (_, _, message) in enumerate(BAD_PARAMS):
        break_params(built_repo, case)
        with pytest.raises(InputError, match=re.escape(message)):
            check_inputs.fn(built_repo.path)
        params.write_text(good_params)
    for case, (_, message) in enumerate(BAD_DATA):
        break_data(built_repo, case)
        with pytest.raises(InputError, match=re.escape(message)):
            check_inputs.fn(built_repo.path)
        raw.write_text(good_raw)


def test_data_checked_once_is_not_read_again_until_it_changes(built_repo, monkeypatch):
    """A no-op reads no data: the check remembers what it found with the file's stat, as DVC's
    state database does; the split params are still checked against it on every run."""
    from kit import data_checks
    from kit.tasks import check_inputs
    from mltoy.data import DataError

    raw = built_repo.path / "data" / "raw" / "iris.csv"
    check_inputs.fn(built_repo.path)

    def read(path, *args):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(data_checks, "scan_raw", read)
    check_inputs.fn(built_repo.path)  # nothing read
    params = built_repo.path / "params.yaml"
    params.write_text(params.read_text().replace("test_size: 0.3", "test_size: 0.99"))
    with pytest.raises(DataError, match="too few rows \\(150, smallest class 50\\)"):
        check_inputs.fn(built_repo.path)  # from what the check found, still without reading
    os.utime(raw)  # the same bytes, a new mtime: checked again, as DVC would hash them again
    with pytest.raises(AssertionError, match="was read again"):
        check_inputs.fn(built_repo.path)


@pytest.mark.parametrize(
    ("flow", "params_case", "data_case"),
    # Each option meets a different kind of each; the single-class and too-few-rows CSVs are the
    # ones prepare's own checks catch, and used to reach DVC before it did.
    [("scripts/flow_dvc.py", 0, 2), ("scripts/flow_stages.py", 2, 1), ("scripts/flow_dvc_stages.py", 1, 3)],
)
def test_bad_input_stops_the_run_and_dvc_records_none_of_it(built_repo, flow, params_case, data_case):
    """Bad params or data: one line, exit 1, no stage run, and every output, dvc.lock,
    data/raw/iris.csv.dvc and DVC's cache as they were: bad data DVC put in its cache would come
    back later with `make data`."""
    before = kept(built_repo)
    params, raw = built_repo.path / "params.yaml", built_repo.path / "data" / "raw" / "iris.csv"
    good_params = params.read_text()
    break_params(built_repo, params_case)
    proc = built_repo.py(flow, check=False)
    assert proc.returncode == 1 and "Running stage" not in proc.stdout
    assert error_line(proc).startswith(f"error: {params}: ") and BAD_PARAMS[params_case][2] in error_line(proc)
    assert kept(built_repo) == before

    params.write_text(good_params)
    break_data(built_repo, data_case)
    proc = built_repo.py(flow, check=False)
    assert proc.returncode == 1 and BAD_DATA[data_case][1] in error_line(proc)
    assert error_line(proc).startswith(f"error: {raw}: ")
    assert "Running: dvc repro" not in proc.stdout and "Running stage 'train'" not in proc.stdout
    assert kept(built_repo) == before


def test_a_stage_that_fails_keeps_the_last_good_outputs(built_repo):
    """No check can foresee a bug: persist keeps DVC from deleting the outputs first, and mltoy's
    atomic writes leave them whole."""
    before = kept(built_repo)
    built_repo.set_param("train.C", 0.7)
    pipeline = built_repo.path / "mltoy" / "pipeline.py"
    pipeline.write_text(pipeline.read_text().replace(
        "    model = fit(read_dataset(train_csv), params.preprocess, params.train)\n",
        "    raise MemoryError('out of memory in train')\n",
    ))
    for flow in FLOWS:
        proc = built_repo.py(flow, check=False)
        assert proc.returncode != 0
        assert "MemoryError: out of memory in train" in proc.stdout
        assert re.search(r"Task run '(dvc repro|train)-\w+' - Finished in state Failed", proc.stdout)
        after = kept(built_repo)
        assert {p: after[p] for p in KEPT[1:]} == {p: before[p] for p in KEPT[1:]}
        # dvc.lock: prepare ran (its code changed) and is recorded; train and evaluate are not.
        lock_before, lock_after = (yaml.safe_load(x["dvc.lock"])["stages"] for x in (before, after))
        assert [lock_after[s] == lock_before[s] for s in ("train", "evaluate")] == [True, True]


def start_flow(repo, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "scripts/flow_dvc.py", *args], cwd=repo.path, env=env or repo.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )


def read_until(proc: subprocess.Popen, pattern: str, timeout: float = 180) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"{pattern!r} never came:\n{''.join(seen)}")


def processes_in(path: Path) -> list[str]:
    """The command lines of live processes whose working folder is `path`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if Path(proc.cwd()) == path and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(" ".join(proc.cmdline()))
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize(
    ("how", "status"),
    [("SIGTERM to the flow's process", 143), ("Ctrl-C in a terminal: SIGINT to the whole group", 130)],
)
def test_a_stopped_run_stops_its_children_and_loses_nothing(built_repo, how, status):
    before = kept(built_repo)
    built_repo.set_param("split.test_size", 0.2)
    proc = start_flow(built_repo)
    seen = read_until(proc, r"> python -m mltoy.cli prepare")
    time.sleep(0.3)
    if status == 143:
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    out = seen + rest
    assert proc.returncode == status, out
    assert re.search(r"Flow run '[\w-]+' - Finished in state Crashed\(", out)
    assert re.search(r"Stopped \((SIGTERM|Ctrl-C)\): the run is marked Crashed in Prefect", out)
    time.sleep(1)
    assert processes_in(built_repo.path) == []  # dvc and the stage command are gone too
    assert kept(built_repo) == before


def test_kill_9_mid_stage_then_a_rerun_completes_cleanly(built_repo):
    built_repo.set_param("split.test_size", 0.2)
    proc = start_flow(built_repo)
    read_until(proc, r"> python -m mltoy.cli prepare")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    out = built_repo.py("scripts/flow_dvc.py", "--no-show-metrics").stdout
    assert "Running stage 'prepare'" in out and "Finished in state Completed()" in out
    assert "test_size: 0.2" in built_repo.read("dvc.lock").decode()
    strays = [p for p in built_repo.path.rglob("*.tmp") if ".dvc/" not in str(p)]
    assert strays == []
    assert built_repo.py("-m", "dvc", "status", "-q").returncode == 0


def test_two_runs_at_once_queue_and_both_complete(built_repo):
    built_repo.set_param("split.test_size", 0.25)  # all three stages: the first run holds the lock for seconds
    first = start_flow(built_repo, "--no-show-metrics")
    read_until(first, r"Beginning flow run")  # it holds the lock from before this line
    second = subprocess.Popen(
        [PY, "scripts/flow_stages.py", "--no-show-metrics"], cwd=built_repo.path, env=built_repo.env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out2, _ = second.communicate(timeout=300)
    out1, _ = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, out1 + out2
    # The second run's own log says which run holds the pipeline.
    assert re.search(r"Waiting for the pipeline: held by flow run '[\w-]+' of 'Prefect operates DVC pipeline' "
                     r"\(pid \d+", out2)
    assert built_repo.py("-m", "dvc", "status", "-q").returncode == 0  # lock and outputs agree
    json.loads(built_repo.read("reports/metrics.json"))


class _Silent(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_api_url_that_does_not_answer_is_a_clear_error_within_seconds(built_repo):
    not_prefect = http.server.HTTPServer(("127.0.0.1", 0), _Silent)
    threading.Thread(target=not_prefect.serve_forever, daemon=True).start()
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen()  # accepts connections, never answers
    urls = [
        f"http://127.0.0.1:{free_port()}/api",  # nothing there
        f"http://127.0.0.1:{not_prefect.server_port}/api",
        f"http://127.0.0.1:{black_hole.getsockname()[1]}/api",
    ]
    try:
        for url in urls:
            start = time.monotonic()
            proc = built_repo.py("scripts/flow_dvc.py", check=False, env={**built_repo.env, "PREFECT_API_URL": url})
            assert time.monotonic() - start < 30  # the probe itself gives up after 5 s
            assert proc.returncode == 1
            assert f"error: PREFECT_API_URL={url} does not answer as a Prefect server" in proc.stdout
    finally:
        not_prefect.shutdown()
        black_hole.close()


def test_the_server_stopping_mid_run_is_reported_and_outputs_stay_correct(built_repo, tmp_path):
    env = {**built_repo.env, "PREFECT_HOME": str(tmp_path / "own-server"), "PREFECT_SERVER_API_PORT": str(free_port()),
           "PREFECT_CLIENT_MAX_RETRIES": "1"}  # Prefect's default of 5 only makes the test slower
    built_repo.py("scripts/server.py", "start", env=env)
    server_pid = int((tmp_path / "own-server" / "server.pid").read_text())
    try:
        built_repo.set_param("split.test_size", 0.2)
        proc = start_flow(built_repo, env=env)
        seen = read_until(proc, r"> python -m mltoy.cli prepare")
    finally:
        os.killpg(server_pid, signal.SIGKILL)  # gone at once, mid-stage
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "stopped during the run" in seen + rest and "start the server and run again" in rest
    # DVC finished its stages without the server: outputs and dvc.lock agree, and are complete.
    assert built_repo.py("-m", "dvc", "status", "-q").returncode == 0
    assert "test_size: 0.2" in built_repo.read("dvc.lock").decode()
    json.loads(built_repo.read("reports/metrics.json"))
