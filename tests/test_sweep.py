"""Parameter sweeps (make sweep): every point checked before anything runs; each trial a DVC
experiment that `dvc exp show`, `apply` and `remove` treat as their own; the workspace untouched;
a cached rerun; a failing trial; Ctrl-C; and a real Dask cluster of two workers started with
`make dask-worker`."""

from __future__ import annotations

import base64
import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import MAKE, PY, ROOT, Repo, api, copy_kit, copy_repo, free_port, view_at
from kit import plots
from kit.processes import stop_group
from kit.sweep.chart import chart_spec
from kit.sweep.results import Row
from kit.sweep.spec import OBJECTIVES, Point, SweepError, load_sweep

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


def stage_runs(output: str) -> list[str]:
    """The names of the run's stage runs (its task runs that ran a stage), as the server has them."""
    port, run_id = view_at(output)
    _, tasks = api(port, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    return sorted(t["name"] for t in tasks if t["name"].split(" ")[0] in ("prepare", "train", "evaluate"))


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
        assert {name: round(v, 4) for name, v in exp["metrics"].items()} == {name: row[name] for name in OBJECTIVES}
    best = rows[0]["trial"]
    assert (f"Best trial: {best} (accuracy {rows[0]['accuracy']:.4f}); "
            f"to bring it to the workspace: dvc exp apply {best}") in swept.output


def test_the_sweep_shows_its_progress_and_its_chart_and_keeps_its_results_whole(swept):
    port, run_id = view_at(swept.output)
    done = re.findall(r"^trial (\d)/4 done: (four-\S+) Completed, accuracy=(0\.\d{4})$", swept.output, flags=re.M)
    assert [int(n) for n, _, _ in done] == [1, 2, 3, 4] and {name for _, name, _ in done} == FOUR_NAMES
    _, found = api(port, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    artifacts = {a["key"]: a for a in found}
    assert artifacts["sweep-progress"]["type"] == "progress" and artifacts["sweep-progress"]["data"] == 100.0
    assert "trial 4/4 done" in artifacts["sweep-progress"]["description"]
    chart = artifacts["sweep-chart"]
    assert chart["type"] == "markdown" and chart["data"].startswith("![sweep four](data:image/svg+xml;base64,")
    svg = base64.b64decode(chart["data"].split(",", 1)[1].rstrip(")\n")).decode()
    assert "accuracy against train.C" in svg and "accuracy against preprocess.standardize" in svg
    assert svg.count('class="mark-line role-mark') == 4  # 2 series in each of 2 panels
    # On disk, beside DVC's other untracked files: the chart, and the results at full precision.
    folder = swept.repo.path / ".dvc" / "tmp" / "kit-sweeps"
    assert (folder / "four.svg").read_text().startswith("<svg")
    with (folder / "four.csv").open() as f:
        kept = {row["trial"]: float(row["accuracy"]) for row in csv.DictReader(f)}
    shown = {row["trial"]: row["accuracy"] for row in results(swept.output)}
    assert kept.keys() == shown.keys() == FOUR_NAMES
    assert all(round(kept[t], 4) == shown[t] for t in kept) and any(len(str(v)) > 6 for v in kept.values())


def test_the_chart_draws_a_grid_as_lines_and_a_random_search_as_points():
    grid = [Row(f"g{i}", {"train.C": c, "preprocess.standardize": s}, "Completed", {"accuracy": 0.9 + c / 100})
            for i, (c, s) in enumerate((c, s) for c in (0.01, 0.1, 1.0, 10.0) for s in (True, False))]
    spec = chart_spec(grid, "accuracy", "grid")
    by_c, by_standardize = spec["hconcat"]
    assert by_c["mark"]["type"] == "line" and by_c["encoding"]["x"]["scale"] == {"type": "log"}
    assert by_c["encoding"]["color"]["title"] == "standardize"
    assert {d["series"] for d in by_c["data"]["values"]} == {"standardize=true", "standardize=false"}
    assert by_standardize["encoding"]["x"]["type"] == "nominal"
    assert {d["x"] for d in by_standardize["data"]["values"]} == {"true", "false"}
    rng = random.Random(1)
    search = [Row(f"r{i}", {"train.C": rng.uniform(0.1, 5), "train.max_iter": rng.randint(50, 500),
                            "preprocess.standardize": rng.random() < 0.5}, "Completed", {"accuracy": rng.random()})
              for i in range(12)]
    panels = chart_spec(search + [Row.failed(Point("bad", {}, {}), ValueError("x"))], "accuracy", "random")["hconcat"]
    assert len(panels) == 3
    for panel in panels:  # every trial its own series: points, no legend
        assert panel["mark"]["type"] == "point" and "color" not in panel["encoding"]
        assert len(panel["data"]["values"]) == 12
    assert chart_spec([], "accuracy", "none") is None
    assert plots.to_svg(spec).count('aria-roledescription="line mark"') == 6  # 2 + 4 series


def test_trials_share_each_stage_run_their_params_do_not_change(swept):
    """A grid over train.* runs prepare once (its params and inputs are the same for all four),
    then train and evaluate once per point, as DVC's run-cache would decide per stage."""
    runs = stage_runs(swept.output)
    assert runs == ["evaluate"] * 4 + ["prepare (test_size=0.3 random_state=42)"] + sorted(
        f"train (standardize={s} C={c} max_iter=200)" for c in ("0.1", "1.0") for s in ("True", "False"))


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
    [logged] = re.findall(r"Metrics: (\{.*\})", run)  # whole; the results table shows 4 decimals
    assert {name: round(value, 4) for name, value in json.loads(logged).items()} == {
        name: best[name] for name in OBJECTIVES}


def test_a_rerun_runs_only_the_stage_runs_not_recorded_intact(swept, tmp_path):
    """DVC's run-cache rule, per stage: a stage run recorded before counts while its outputs are in
    DVC's cache. An experiment removed (`dvc exp remove`) is recorded again without running
    anything; a trial whose model is gone from the cache runs train again, and only train: its
    model comes out the same, so evaluate's recorded run still counts."""
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
    lost_row = next(row for row in rows if row["trial"] == lost)
    assert stage_runs(rerun) == [f"train (standardize={lost_row['preprocess.standardize']} C={lost_row['train.C']} "
                                 "max_iter=200)"]
    states = {row["trial"]: row["state"] for row in results(rerun)}
    assert states.pop(lost) == "Completed" and set(states.values()) == {"Cached"}
    assert f"Experiment {removed}: recorded" in rerun
    assert set(experiments(repo)) == FOUR_NAMES
    assert (repo.path / ".dvc" / "cache" / "files" / "md5" / model[:2] / model[2:]).is_file()
    unchanged = {ref: commit for ref, commit in exp_refs(repo).items() if not ref.endswith(f"/{removed}")}
    assert unchanged == {ref: commit for ref, commit in refs.items() if not ref.endswith(f"/{removed}")}


# Runs a script with an audit hook that writes down every file of DVC's cache it opens.
OPENS = """import runpy, sys
log = open(sys.argv[1], "w")
def hook(event, args):
    if event == "open" and "/.dvc/cache/files/" in str(args[0]):
        log.write(f"{args[0]}\\n"); log.flush()
sys.addaudithook(hook)
sys.argv = sys.argv[2:]
sys.path.insert(0, "scripts")  # as `python scripts/sweep.py` puts its folder first
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_cached_rerun_reads_no_output(swept, tmp_path):
    """Everything recorded: the sweep records each experiment from md5s and git's objects, and
    opens no file of DVC's cache (an audit hook in its process says which files it opens)."""
    repo = copy_swept(swept, tmp_path)
    refs = exp_refs(repo)
    opened = tmp_path / "opened.txt"
    rerun = repo.py("-c", OPENS, str(opened), "scripts/sweep.py", "four.yaml").stdout
    assert {row["state"] for row in results(rerun)} == {"Cached"} and stage_runs(rerun) == []
    assert opened.read_text() == ""
    assert exp_refs(repo) == refs  # each experiment unchanged
    # The hook does see a read of the cache: the same wrapper around a script that reads one object.
    reader = tmp_path / "read_one.py"
    some = next(path for path in (repo.path / ".dvc" / "cache" / "files" / "md5").rglob("*") if path.is_file())
    reader.write_text(f"open({str(some)!r}, 'rb').read()\n")
    repo.py("-c", OPENS, str(opened), str(reader))
    assert opened.read_text() == f"{some}\n"
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


FOREIGN_DVC_YAML = """\
stages:
  scale:
    cmd: python scale.py
    deps: [scale.py, numbers.txt]
    params: [factor]
    outs: [scaled.txt]
  score:
    cmd: python score.py
    deps: [score.py, scaled.txt]
    metrics: [{metrics.json: {cache: false}}]
"""
# The first stage imports a module only the user's venv has; neither reads YAML (no PyYAML there).
SCALE = ("import only_in_user_venv\nfactor = float(open('params.yaml').read().split(':')[1])\n"
         "open('scaled.txt', 'w').write(' '.join(str(factor * float(n)) for n in open('numbers.txt').read().split()))\n")
SCORE = "import json\nvalues = [float(n) for n in open('scaled.txt').read().split()]\n" \
        "json.dump({'total': sum(values)}, open('metrics.json', 'w'))\n"


def test_a_foreign_pipeline_sweeps_by_its_cmds_in_the_users_environment(repo, tmp_path):
    """Another team's DVC project: its stages run by their cmd, in a folder of the stage run's own,
    with the user's PATH (a module only the user's venv has); each trial a DVC experiment of that
    repository that `dvc exp show` lists and `dvc exp apply` restores, `dvc status` clean."""
    from test_flow_dvc import user_venv

    venv = user_venv(tmp_path)
    env = {**repo.env, "PATH": f"{venv / 'bin'}{os.pathsep}{repo.env['PATH']}"}
    other = tmp_path / "other"
    other.mkdir()
    for cmd in (["git", "init", "-q"], [PY, "-m", "dvc", "init", "-q"],
                [PY, "-m", "dvc", "config", "--local", "core.site_cache_dir", str(tmp_path / "other-site")]):
        repo.run(*cmd, cwd=other)
    (other / "dvc.yaml").write_text(FOREIGN_DVC_YAML)
    (other / "params.yaml").write_text("factor: 1.0\n")
    (other / "scale.py").write_text(SCALE)
    (other / "score.py").write_text(SCORE)
    (other / "numbers.txt").write_text("1 2 3\n")
    (other / "sweep.yaml").write_text("objective: total\ngrid:\n  factor: [2.0, 5.0]\n")
    repo.run(PY, "-m", "dvc", "add", "-q", "numbers.txt", cwd=other)
    repo.run("git", "add", "-A", cwd=other)
    repo.run("git", "commit", "-qm", "another team's pipeline", cwd=other)

    run = repo.run(*MAKE, "sweep", f"REPO={other}", env=env)
    rows = {row["trial"]: row for row in results(run.stdout)}
    assert {name: row["total"] for name, row in rows.items()} == {"sweep-factor=2.0": 12.0, "sweep-factor=5.0": 30.0}
    shown = json.loads(repo.run(PY, "-m", "dvc", "exp", "show", "--json", cwd=other).stdout)
    listed = {exp["name"]: exp["revs"][0]["data"]["metrics"]["metrics.json"]["data"]
              for baseline in shown for exp in baseline.get("experiments") or []}
    assert listed == {"sweep-factor=2.0": {"total": 12.0}, "sweep-factor=5.0": {"total": 30.0}}
    repo.run(PY, "-m", "dvc", "exp", "apply", "sweep-factor=5.0", cwd=other)
    assert (other / "scaled.txt").read_text() == "5.0 10.0 15.0"
    assert "Data and pipelines are up to date." in repo.run(PY, "-m", "dvc", "status", cwd=other).stdout


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
    assert list(trial_tmp.iterdir()) == []
    assert list((built_repo.path / ".dvc" / "tmp").glob("kit-trial-*")) == []  # every stage run's folder removed
    cache = built_repo.path / ".dvc" / "cache" / "files" / "md5"
    assert all(len(p.parent.name + p.name) == 32 for p in cache.rglob("*") if p.is_file())  # no temporary files
    assert workspace(built_repo) == before


# --- a sweep on a Dask cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, prefect_server):
    """A real `dask scheduler` on a free loopback port and two workers, each joined to it by
    `make dask-worker`, as separate processes, in a checkout of the kit's code with no data and no
    repository of its own; stopped afterwards. The scheduler imports the kit's code too (it
    unpickles the tasks): started as dask-start starts it."""
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask")
    code = logs / "kit-code"
    copy_kit(code)
    address = f"tcp://127.0.0.1:{free_port()}"
    env = dict(prefect_server, PREFECT_HOME=str(logs / "prefect-home"))

    def spawn(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(logs / f"{name}.log", "wb") as log:
            return subprocess.Popen(args, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT,
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


def test_on_dask_the_files_go_by_md5_through_the_dvc_remote(dask_cluster, built_repo, tmp_path):
    """With a default DVC remote (a folder, as a team's shared disk), the workers fetch what they
    read from it and put what they write there; only md5s go through Dask. Each stage run is a
    task run on the server, with its logs from the worker (Prefect #19925, #18082)."""
    address, workers = dask_cluster
    remote = tmp_path / "dvc-remote"
    dvc(built_repo, "remote", "add", "-d", "--local", "store", str(remote))
    (built_repo.path / "six.yaml").write_text(
        "objective: f1_macro\ngrid:\n  train.C: [0.05, 0.5, 5.0]\n  preprocess.standardize: [true, false]\n")
    run = make(built_repo, "sweep", "SWEEP=six.yaml", f"DASK_ADDRESS={address}")
    assert f"Files go by md5 through the DVC remote 'store' ({remote}/files/md5)" in run.stdout
    rows = results(run.stdout)
    assert len(rows) == 6 and {row["state"] for row in rows} == {"Completed"}
    assert {row["worker"] for row in rows} <= workers and len(experiments(built_repo)) == 6
    assert len(stage_runs(run.stdout)) == 1 + 6 + 6  # prepare once
    for ref in exp_refs(built_repo).values():  # every output of every trial is on the remote
        lock = yaml.safe_load(built_repo.run("git", "show", f"{ref}:dvc.lock").stdout)
        for out in (out for stage in lock["stages"].values() for out in stage["outs"]):
            assert (remote / "files" / "md5" / out["md5"][:2] / out["md5"][2:]).is_file(), out
    assert built_repo.tracked_changes() == ""
    port, run_id = view_at(run.stdout)
    _, tasks = api(port, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    staged = {t["id"] for t in tasks if t["name"].split(" ")[0] in ("prepare", "train", "evaluate")}
    assert {t["state_type"] for t in tasks if t["id"] in staged} == {"COMPLETED"}
    deadline = time.monotonic() + 15  # a worker sends its logs in batches, every 2 s or so
    while True:
        _, logs = api(port, "POST", "/logs/filter", {"logs": {"task_run_id": {"any_": sorted(staged)}}})
        if {log["task_run_id"] for log in logs} == staged or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {log["task_run_id"] for log in logs} == staged

    # Each trial's outputs came back from the remote to this repository's cache, as `dvc pull`
    # would bring them: the best trial applies here.
    dvc(built_repo, "exp", "apply", rows[0]["trial"])
    assert "Data and pipelines are up to date." in dvc(built_repo, "status")


def test_on_dask_without_a_remote_the_files_go_through_dask_and_the_sweep_says_so(dask_cluster, built_repo):
    address, _ = dask_cluster
    (built_repo.path / "two.yaml").write_text("objective: accuracy\ngrid:\n  train.C: [0.2, 2.0]\n")
    run = make(built_repo, "sweep", "SWEEP=two.yaml", f"DASK_ADDRESS={address}")
    assert "No default DVC remote: each stage run's files go through Dask with it (3.9 kB of data" in run.stdout
    assert re.search(r"Dask dashboard: http://127\.0\.0\.1:\d+/status$", run.stdout, flags=re.M)
    assert {row["state"] for row in results(run.stdout)} == {"Completed"} and len(experiments(built_repo)) == 2
    assert "Data and pipelines are up to date." in dvc(built_repo, "status")


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
