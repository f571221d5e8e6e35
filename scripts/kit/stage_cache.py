"""Option B's cache: DVC's rule for skipping work, kept in Prefect's result store. A stage is not
run again while its paths, the md5 of each dep and the values of the params it reads are those of
a recorded run, and the outputs that run recorded are intact.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.results import get_result_store

from kit import file_memo
from kit.dvc_yaml import Stage
from kit.project import ROOT
from mltoy.params import Params

Outputs = dict[str, str | None]  # each output's md5, None where it is missing


def stage_key(stage: Stage, params: Params) -> str:
    """What DVC's dvc.lock records of a stage's inputs: its paths, the md5 of each dep (its code
    and data; hashed only when the file changed, kit/file_memo.py) and the values of the params it
    reads."""
    spec = {
        "deps": {dep: file_memo.md5(ROOT, ROOT / dep) for dep in stage.deps},
        "params": {key: param_value(params, key) for key in stage.params},
        "paths": {k: str(v.relative_to(ROOT)) for k, v in stage.paths.items()},
    }
    return f"{stage.name}-{hashlib.md5(json.dumps(spec, sort_keys=True).encode()).hexdigest()}"


def outputs_state(stage: Stage) -> Outputs:
    """What a run of the stage left behind."""
    return {out: file_memo.md5(ROOT, ROOT / out) for out in stage.outs}


def param_value(params: Params, dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


class StageCache(CachePolicy):
    """A stage is cached on stage_key; its stored result is the md5 of each output it wrote."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        return stage_key(inputs["stage"], inputs["params"])


async def run_cached(stage_task: Task, stage: Stage, params: Params, **kwargs: Any) -> Outputs:
    """Call a stage's task from an async flow, with DVC's rule for outputs: a cached result counts
    only while the outputs on disk are the ones it recorded. When they were deleted or edited, the
    task runs again (refresh_cache), records afresh, and the next run finds it cached."""
    store = await get_result_store().aupdate_for_task(stage_task)
    key = stage_key(stage, params)
    done = (await store.aread(key)).result if await store.aexists(key) else None
    return stage_task.with_options(refresh_cache=done != outputs_state(stage))(stage, params, **kwargs)
