"""Parameter sweeps (make sweep): every point checked before anything runs; each trial a DVC
experiment that `dvc exp show`, `apply` and `remove` treat as their own; the workspace untouched;
a cached rerun; a failing trial; Ctrl-C; and a real Dask cluster of two workers started with
`make dask-worker`."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import MAKE, PY, ROOT, Repo, api, copy_repo, free_port, view_at
from kit.processes import stop_group
from kit.sweep.spec import OBJECTIVES, SweepError, load_sweep

FOUR = "objective: accuracy\ngrid:\n  train.C: [0.1, 1.0]\n  preprocess.standardize: [true, false]\n"
FOUR_NAMES = {f"four-C={c}-standardize={s}" for c in ("0.1", "1.0") for s in ("true", "false")}


def make(repo: Repo, *args: str, **kw) -> subprocess.CompletedProcess:
    return repo.run(*MAKE, *args, **kw)


def dvc(repo: Repo, *args: str) -> str:
    return repo.py("-m", "dvc", *args).stdout


def experiments(repo: Repo) -> dict[str, dict]:
    """Each experiment `dvc exp show --json` lists on HEAD: its params and metrics."""
    shown = json.loads(dvc(repo, "exp", "show", "--json"))
    return {
        exp["name"]: {
            "params": exp["revs"][0]["data"]["params"]["params.yaml"]["data"],
            "metrics": exp["revs"][0]["data"]["metrics"]["reports/metrics.json"]["data"],
        }
        for baseline in shown for exp in baseline.get("experiments") or []
    }


def exp_refs(repo: Repo) -> dict[str, str]:
    """Each experiment's ref and the commit it points to, as git sees them."""
    out = repo.run("git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").stdout
    return dict(line.split() for line in out.splitlines() if "/exec/" not in line and "/apply/" not in line)


def results(output: str) -> list[dict]:
    """The rows of the run's `sweep-results` artifact, as the API gives them."""
    port, run_id = view_at(output)
    _, found = api(port, "POST", "/artifacts/filter",
                   {"artifacts": {"key": {"any_": ["sweep-results"]}, "flow_run_id": {"any_": [run_id]}}})
    assert len(found) == 1, output
    return json.loads(found[0]["data"])


def workspace(repo: Repo) -> dict[str, object]:
    """What a sweep must leave as it was: every file of the working tree (bytes and mtime), HEAD,
    the branches and the index. Not .git's objects and refs/exps, nor DVC's cache and tmp."""
    state: dict[str, object] = {}
    for path in sorted(repo.path.rglob("*")):
        rel = path.relative_to(repo.path)
        if path.is_file() and rel.parts[0] != ".git" and rel.parts[:2] not in ((".dvc", "cache"), (".dvc", "tmp")) \
                and "__pycache__" not in rel.parts:
            state[str(rel)] = (path.read_bytes(), path.stat().st_mtime_ns)
    for rel in (".git/HEAD", ".git/index"):
        state[rel] = ((repo.path / rel).read_bytes(), (repo.path / rel).stat().st_mtime_ns)
    state["branches"] = repo.run("git", "for-each-ref", "refs/heads").stdout
    return state


# --- the sweep file, in-process --------------------------------------------------------------


def spec(tmp_path: Path, text: str, name: str = "s.yaml"):
    (tmp_path / name).write_text(text)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return load_sweep(tmp_path / name, tmp_path / "params.yaml")


def test_grid_expands_to_every_combination_named_by_sweep_and_point(tmp_path):
    sweep = spec(tmp_path, FOUR, "four.yaml")
    assert sweep.objective == "accuracy" and {p.name for p in sweep.points} == FOUR_NAMES
    point = next(p for p in sweep.points if p.name == "four-C=1.0-standardize=false")
    assert point.values == {"train.C": 1.0, "preprocess.standardize": False}
    assert point.params.train.C == 1.0 and point.params.train.max_iter == 200  # the rest from params.yaml
    assert len(spec(tmp_path, (ROOT / "sweep.yaml").read_text()).points) == 8  # the committed example


def test_random_search_is_seeded_distinct_and_in_range(tmp_path):
    text = ("objective: f1_macro\nrandom:\n  trials: 6\n  seed: {}\n  space:\n"
            "    train.C: {{low: 0.001, high: 100, log: true}}\n    train.max_iter: {{low: 50, high: 500}}\n"
            "    preprocess.standardize: [true, false]\n")
    first, again, other = (spec(tmp_path, text.format(seed)).points for seed in (7, 7, 8))
    assert [p.name for p in first] == [p.name for p in again] != [p.name for p in other]
    assert len({p.name for p in first}) == 6
    for p in first:
        assert 0.001 <= p.values["train.C"] <= 100 and isinstance(p.values["train.max_iter"], int)
        assert p.values["train.C"] == float(f"{p.values['train.C']:.3g}")  # 3 significant digits


@pytest.mark.parametrize("text, message", [
    ("objective: accuracy\ngrid:\n  train.CC: [1.0]\n",
     "grid: train.CC: not a key of params.yaml (its keys: split.test_size,"),
    ("objective: accuracy\ngrid:\n  train.C: [0.1, -1.0]\n", "train.C: input should be greater than 0 (got -1.0)"),
    ("objective: accuracy\ngrid:\n  preprocess.standardize: [true, 'yes']\n",
     "preprocess.standardize: input should be a valid boolean"),
    ("objective: accuracy\ngrid: {}\n", "grid: empty"),
    ("objective: accuracy\ngrid:\n  train.C: []\n", "grid: train.C: expected a non-empty list of values"),
    ("objective: accuracy\ngrid:\n  train.C: [0.1, 0.1]\n", "grid: train.C: 0.1 is listed twice"),
    ("objective: loss\ngrid:\n  train.C: [0.1]\n", "objective: unknown metric 'loss' (allowed: accuracy, f1_macro)"),
    ("grid:\n  train.C: [0.1]\n", "objective: missing"),
    ("objective: accuracy\n", "give either `grid` or `random`, not neither"),
    ("objective: accuracy\ngird:\n  train.C: [0.1]\n", "gird: unknown key (allowed: objective, grid, random)"),
    ("objective: accuracy\nrandom: {trials: 0, seed: 1, space: {train.C: [0.1]}}\n",
     "random: trials: expected a whole number of 1 or more"),
    ("objective: accuracy\nrandom: {trials: 2, space: {train.C: [0.1]}}\n", "random: seed: missing"),
    ("objective: accuracy\nrandom: {trials: 3, seed: 1, space: {preprocess.standardize: [true, false]}}\n",
     "random: trials: this space has only 2 distinct points"),
    ("objective: accuracy\nrandom: {trials: 2, seed: 1, space: {train.C: {low: 1, high: 0.5}}}\n",
     "random: space: train.C: expected numbers low < high"),
    ("objective: accuracy\nrandom: {trials: 2, seed: 1, space: {train.max_iter: {low: -9, high: 0}}}\n",
     "train.max_iter: input should be greater than or equal to 1 (got -"),
    ("objective: accuracy\ngrid:\n  train.C: [0.1\n", "YAML syntax error at line"),
])
def test_a_bad_sweep_is_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(SweepError) as err:
        spec(tmp_path, text)
    assert str(err.value).startswith(f"{tmp_path / 's.yaml'}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


@dataclass
class Swept:
    repo: Repo
    output: str
    before: dict
    after: dict


@pytest.fixture(scope="module")
def swept(tmp_path_factory, built_template, prefect_server) -> Swept:
    """A built copy of the kit in which `make sweep SWEEP=four.yaml` ran once, on threads."""
    repo = copy_repo(tmp_path_factory.mktemp("swept"), built_template, prefect_server)
    (repo.path / "four.yaml").write_text(FOUR)
    before = workspace(repo)
    run = make(repo, "sweep", "SWEEP=four.yaml")
    return Swept(repo, run.stdout, before, workspace(repo))


def copy_swept(swept: Swept, tmp_path: Path) -> Repo:
    """A copy of the swept repository and of its Prefect home (which keeps the trials' cache)."""
    repo = copy_repo(tmp_path, swept.repo.path, dict(swept.repo.env))
    shutil.copytree(swept.repo.env["PREFECT_HOME"], repo.env["PREFECT_HOME"])
    return repo


def test_a_sweep_leaves_the_workspace_as_it_found_it(swept):
    assert swept.after == swept.before
    assert swept.repo.tracked_changes() == ""


def test_every_trial_is_a_dvc_experiment_with_its_params_and_metrics(swept):
    rows = results(swept.output)
    assert [row["trial"] for row in rows] == [row["trial"] for row in
                                              sorted(rows, key=lambda r: (-r["accuracy"], r["trial"]))]
    assert {row["state"] for row in rows} == {"Completed"}
    shown = experiments(swept.repo)
    assert set(shown) == {row["trial"] for row in rows} == FOUR_NAMES
    for row in rows:
        exp = shown[row["trial"]]
        assert exp["params"]["train"] == {"C": row["train.C"], "max_iter": 200}
        assert exp["params"]["preprocess"] == {"standardize": row["preprocess.standardize"]}
        assert exp["metrics"] == {name: row[name] for name in OBJECTIVES}
    best = rows[0]["trial"]
    assert (f"Best trial: {best} (accuracy {rows[0]['accuracy']:.4f}); "
            f"to bring it to the workspace: dvc exp apply {best}") in swept.output


def test_applying_a_trial_makes_it_the_workspace_and_dvc_agrees(swept, tmp_path):
    repo = copy_swept(swept, tmp_path)
    best = results(swept.output)[0]
    dvc(repo, "exp", "apply", best["trial"])  # with DVC's own forced checkout, from its cache
    assert "Data and pipelines are up to date." in dvc(repo, "status")
    params = yaml.safe_load(repo.read("params.yaml"))
    assert params["train"]["C"] == best["train.C"]
    assert params["preprocess"]["standardize"] == best["preprocess.standardize"]
    run = repo.py("scripts/flow_dvc.py").stdout  # make run-dvc: a no-op that shows the trial's metrics
    for stage in ("prepare", "train", "evaluate"):
        assert f"Stage '{stage}' didn't change, skipping" in run
    assert f"Metrics: {json.dumps({name: best[name] for name in OBJECTIVES})}" in run


def test_a_rerun_computes_only_what_is_not_recorded_intact_and_reports_every_trial(swept, tmp_path):
    """Option B's rule, for whole trials: a trial computed before counts while the outputs it
    recorded are intact. An experiment removed (`dvc exp remove`) is recorded again from DVC's
    cache, not run; a trial whose model is gone from the cache runs again."""
    repo = copy_swept(swept, tmp_path)
    refs = exp_refs(repo)
    rows = results(swept.output)
    removed, lost = rows[0]["trial"], rows[1]["trial"]
    dvc(repo, "exp", "remove", removed)
    assert set(experiments(repo)) == FOUR_NAMES - {removed}
    lock = yaml.safe_load(repo.run("git", "show", f"{refs_of(refs, lost)}:dvc.lock").stdout)
    model = next(out["md5"] for out in lock["stages"]["train"]["outs"])
    (repo.path / ".dvc" / "cache" / "files" / "md5" / model[:2] / model[2:]).unlink()

    rerun = make(repo, "sweep", "SWEEP=four.yaml").stdout
    assert "4 trials: 1 to run, 3 already computed" in rerun
    states = {row["trial"]: row["state"] for row in results(rerun)}
    assert states.pop(lost) == "Completed" and set(states.values()) == {"Cached"}
    assert f"Experiment {removed}: recorded" in rerun
    assert set(experiments(repo)) == FOUR_NAMES
    assert (repo.path / ".dvc" / "cache" / "files" / "md5" / model[:2] / model[2:]).is_file()
    unchanged = {ref: commit for ref, commit in exp_refs(repo).items() if not ref.endswith(f"/{removed}")}
    assert unchanged == {ref: commit for ref, commit in refs.items() if not ref.endswith(f"/{removed}")}


def refs_of(refs: dict[str, str], name: str) -> str:
    return next(commit for ref, commit in refs.items() if ref.endswith(f"/{name}"))


def test_a_failing_trial_is_listed_and_the_others_recorded(built_repo):
    (built_repo.path / "split.yaml").write_text("objective: accuracy\ngrid:\n  split.test_size: [0.3, 0.99]\n")
    run = built_repo.py("scripts/sweep.py", "split.yaml", check=False)
    assert run.returncode == 1
    rows = {row["trial"]: row for row in results(run.stdout)}
    failed = rows["split-test_size=0.99"]
    assert failed["state"] == "Failed" and failed["accuracy"] is None
    assert failed["error"].startswith("DataError: data/raw/iris.csv: too few rows (150, smallest class 50)")
    assert rows["split-test_size=0.3"]["state"] == "Completed"
    assert set(experiments(built_repo)) == {"split-test_size=0.3"}
    assert "1 of 2 trials failed: split-test_size=0.99" in run.stdout


def test_nothing_runs_or_is_recorded_for_a_bad_sweep_or_uncommitted_code(built_repo):
    (built_repo.path / "bad.yaml").write_text("objective: accuracy\ngrid:\n  train.CC: [1.0]\n")
    bad = built_repo.py("scripts/sweep.py", "bad.yaml", check=False)
    assert bad.returncode == 1
    assert [line for line in bad.stdout.splitlines() if line.startswith("error: ")] == [
        f"error: {built_repo.path / 'bad.yaml'}: grid: train.CC: not a key of params.yaml "
        "(its keys: split.test_size, split.random_state, preprocess.standardize, train.C, train.max_iter)"]
    assert "Beginning flow run" not in bad.stdout
    with open(built_repo.path / "mltoy" / "pipeline.py", "a") as f:
        f.write("# an edit not committed\n")
    dirty = built_repo.py("scripts/sweep.py", "--no-show-metrics", check=False)
    assert dirty.returncode == 1
    assert "error: mltoy/pipeline.py: not as committed; experiments are recorded on HEAD" in dirty.stdout
    assert exp_refs(built_repo) == {}


def test_ctrl_c_stops_the_trials_and_what_is_recorded_is_whole(built_repo, tmp_path):
    (built_repo.path / "many.yaml").write_text("objective: accuracy\nrandom:\n  trials: 40\n  seed: 3\n  space:\n"
                                               "    train.C: {low: 0.01, high: 100, log: true}\n")
    trial_tmp = tmp_path / "trial-tmp"
    trial_tmp.mkdir()
    before = workspace(built_repo)
    proc = subprocess.Popen([PY, "scripts/sweep.py", "many.yaml", "--jobs", "1"], cwd=built_repo.path,
                            env=dict(built_repo.env, TMPDIR=str(trial_tmp)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if ": recorded" in line:
            proc.send_signal(signal.SIGINT)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=60) == 130, "".join(lines)
    recorded = set(re.findall(r"Experiment (\S+): recorded", "".join(lines)))
    assert 1 <= len(recorded) < 40, "".join(lines)
    assert {ref.rsplit("/", 1)[1] for ref in exp_refs(built_repo)} == recorded
    assert set(experiments(built_repo)) == recorded  # each one whole: DVC reads its params and metrics
    assert list(trial_tmp.iterdir()) == []  # every trial's folder removed
    cache = built_repo.path / ".dvc" / "cache" / "files" / "md5"
    assert all(len(p.parent.name + p.name) == 32 for p in cache.rglob("*") if p.is_file())  # no temporary files
    assert workspace(built_repo) == before


# --- a sweep on a Dask cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, template, prefect_server):
    """A real `dask scheduler` on a free loopback port and two workers, each joined to it by
    `make dask-worker` in a copy of the kit, as separate processes; stopped afterwards. The
    scheduler imports the kit's code too (it unpickles the tasks): started as dask-start starts it."""
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = dict(prefect_server, PREFECT_HOME=str(logs / "prefect-home"))

    def spawn(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(logs / f"{name}.log", "wb") as log:
            return subprocess.Popen(args, cwd=template, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    scheduler = spawn("scheduler", [PY, "scripts/dask_cluster.py", "dask", "scheduler", "--host", "127.0.0.1",
                                    "--port", address.rsplit(":", 1)[1], "--dashboard-address", "127.0.0.1:0"], env)
    workers: list[subprocess.Popen] = []
    try:
        with Client(address, timeout="60s", set_as_default=False) as client:  # the scheduler is up
            workers += [spawn(f"worker{i}", [*MAKE, "dask-worker", f"DASK_ADDRESS={address}", "DASK_WORKERS=1"], env)
                        for i in (1, 2)]
            client.wait_for_workers(2, timeout=90)
            names = {info["name"] for info in client.scheduler_info()["workers"].values()}
        yield address, names
    finally:
        for proc in [*workers, scheduler]:  # the workers first: a scheduler gone makes them wait for it
            stop_group(proc.pid, timeout=30)


def test_trials_run_on_both_workers_of_a_dask_cluster(dask_cluster, built_repo):
    address, workers = dask_cluster
    (built_repo.path / "six.yaml").write_text(
        "objective: f1_macro\ngrid:\n  train.C: [0.05, 0.5, 5.0]\n  preprocess.standardize: [true, false]\n")
    run = make(built_repo, "sweep", "SWEEP=six.yaml", f"DASK_ADDRESS={address}")
    rows = results(run.stdout)
    assert len(rows) == 6 and {row["state"] for row in rows} == {"Completed"}
    assert {row["worker"] for row in rows} == workers  # both workers ran trials
    assert len(experiments(built_repo)) == 6
    assert built_repo.tracked_changes() == ""
    # Each trial is a task run on the server, with its logs from the worker (Prefect #19925, #18082).
    port, run_id = view_at(run.stdout)
    _, tasks = api(port, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    trials = {t["name"]: t for t in tasks if t["name"].startswith("six-")}
    assert set(trials) == {row["trial"] for row in rows}
    assert {t["state_type"] for t in trials.values()} == {"COMPLETED"}
    deadline = time.monotonic() + 15  # a worker sends its logs in batches, every 2 s or so
    while True:
        _, logs = api(port, "POST", "/logs/filter", {"logs": {"task_run_id": {"any_": [t["id"] for t in trials.values()]}}})
        if {log["task_run_id"] for log in logs} == {t["id"] for t in trials.values()} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {log["task_run_id"] for log in logs} == {t["id"] for t in trials.values()}


def test_a_dask_sweep_needs_a_server_and_a_cluster_that_can_run_trials(dask_cluster, built_repo, tmp_path):
    address, _ = dask_cluster
    no_server = built_repo.py("scripts/sweep.py", "--dask-address", address, check=False,
                              env=dict(built_repo.env, PREFECT_SERVER_API_PORT=str(free_port())))
    assert no_server.returncode == 1
    assert ("error: a sweep on a Dask cluster (its workers report to it) needs a running Prefect server, and "
            "none answers at") in no_server.stdout
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    no_scheduler = built_repo.py("scripts/sweep.py", "--dask-address", nowhere, check=False)
    assert no_scheduler.returncode == 1
    assert f"error: no Dask scheduler answers at {nowhere}; start one with `make dask-start`" in no_scheduler.stdout
    # A scheduler started without the kit's code could not even unpickle a trial: say so first.
    bare_address = f"tcp://127.0.0.1:{free_port()}"
    bare = subprocess.Popen([PY, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", bare_address.rsplit(":", 1)[1],
                             "--dashboard-address", "127.0.0.1:0"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        from distributed import Client

        Client(bare_address, timeout="60s", set_as_default=False).close()  # it is up
        no_code = built_repo.py("scripts/sweep.py", "--dask-address", bare_address, check=False)
    finally:
        stop_group(bare.pid, timeout=30)
    assert no_code.returncode == 1
    assert (f"error: the scheduler at {bare_address} cannot import the kit's code; start them from a checkout "
            "of the kit") in no_code.stdout
    assert exp_refs(built_repo) == {}
