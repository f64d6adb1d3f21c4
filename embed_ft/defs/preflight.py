"""Preflight: everything a run needs, checked before anything is created anywhere (namespace, upload, deployment, job).

`preflight_problems(job_def, spec, resources)` is a plain function returning typed `Problem`s (what, why, fix):
the CLI calls it with the spec it built before launching a run, and the `preflight` asset calls it with the run's
stored spec (`experiment_spec.py`) at the start of runs launched from the UI. The spec itself was validated when it
was built (`spec/changes.py`). Checks, in order (a later check needs the earlier ones to pass):

1. profile: the services speak one NeMo API generation, and the spec was made for the backend the resources point
   at (the local platform or a NeMo cluster, v1 or v2);
2. source (when the run holds `specter_raw`): a local path exists and loads, a BEIR folder has the split's files,
   a Hub id resolves (so the Hub is reachable);
3. tasks (when the run holds an evaluation): `file://NAME/` is a BEIR set in the embedded platform's BEIR root;
   `hf://datasets/NS/NAME` is a repo in the Data Store.

A BEIR folder ``.../beir/scifact`` that is not on this machine passes when the Hugging Face Hub cache holds SciFact
or the Hub is reachable (it is filled from there, `data/public_beir.py`); it fails only when the Hub is offline.

Nothing here writes. Only an `hf://` task makes the embedded platform start (to ask its Data Store), and only once
config and source have passed.

Why an asset upstream of the roots, not a run hook or a check on each asset: Dagster has no run-start hook, and a
check inside each asset fails once per asset (the UI showed three failures with a stack trace each). With the
`preflight` asset as the one upstream of both roots (`specter_raw`, `baseline_nim`), a bad run stops in one step
before any other starts. And why it reports through a failed ERROR asset check and leaves its output unyielded
instead of raising: Dagster's UI marks every asset planned in a *failed* run as "Failed" (even the skipped ones,
whose last materialization is fine); a step whose optional output is absent skips everything downstream and
fails no run, so the one red mark is this check, and the one log line says what to fix.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from ..data.beir import load_beir
from ..data.errors import SourceError
from ..data.public_beir import FILLABLE, FillState, download_line, fill_state
from ..data.specter import load_specter_source, resolve_hub_revision
from ..nemo.errors import NemoError
from ..nemo.v2.files import FilesClient
from ..platform.launcher import status as platform_status
from ..platform.settings import PlatformSettings
from ..resources import CustomizerResource, DataStoreResource, EvaluatorResource
from ..spec.experiment import DataSpec, ExperimentSpec, task_name
from .backend import backend_defaults
from .data import resolve_source_kind
from .experiment_spec import SPEC_ASSET, run_spec

PREFLIGHT = "preflight"
PREFLIGHT_CHECK = "preflight_passed"
EVALUATION_OPS = ("baseline_evaluation", "fine_tuned_evaluation")
SOURCE_FIX = (
    "give a local SPECTER-layout file or folder, a BEIR folder (corpus.jsonl, queries.jsonl, qrels/), or a reachable "
    "Hub dataset id (`embed-ft run --source ...`, or the change data.source of experiment_spec in the Launchpad)"
)


@dataclass(frozen=True)
class Problem:
    what: str  # the thing checked: "config", "source", "task file://scidocs/"
    why: str
    fix: str

    def line(self) -> str:
        return f"{self.what}: {self.why} -> fix: {self.fix}"


def profile_problems(spec: ExperimentSpec, resources: Mapping[str, Any]) -> list[Problem]:
    """Every resource speaks the same NeMo API generation, and the spec's profile is the one of the backend that
    trains (the Customizer's)."""
    try:
        apis = {key: resource.api_profile() for key, resource in resources.items() if hasattr(resource, "api_profile")}
        backend = backend_defaults(resources["customizer"]).name
    except ValueError as exc:
        return [Problem("backend", str(exc), "set EMBED_FT_NEMO_API and the NeMo URLs (README), or --backend")]
    # The services that hand each other data (uploads, models, deployments) speak one generation; the Evaluator may
    # be a v2 server evaluating what a v1 backend serves (its NIMs are registered there as providers).
    trainers = {key: api for key, api in apis.items() if key != "evaluator"}
    if len(set(trainers.values())) > 1:
        found = ", ".join(f"{key} {api}" for key, api in sorted(trainers.items()))
        return [
            Problem(
                "backend",
                f"the services speak different NeMo API generations ({found})",
                "set EMBED_FT_NEMO_API=v1 or v2 instead of auto, with URLs of that generation",
            )
        ]
    if spec.profile == backend:
        return []
    return [
        Problem(
            "profile",
            f"the spec was made for the {spec.profile!r} backend profile, but the resources point "
            f"at a {backend!r} backend",
            "start from a preset again (embed-ft run --preset NAME), which takes the backend's profile",
        )
    ]


def _unavailable(what: str, folder: str) -> Problem:
    return Problem(
        what,
        "it is not on this machine, not in the Hugging Face Hub cache, and the Hub is offline (HF_HUB_OFFLINE)",
        f"unset HF_HUB_OFFLINE to download {download_line(folder)}; or set EMBED_FT_SHARED_DATA to a folder holding "
        "beir/<name>",
    )


def source_problems(data: DataSpec) -> list[Problem]:
    """The source exists and loads (a BEIR folder: its files for the split; a Hub id: the Hub knows its revision).
    A missing BEIR folder of a set the Hub publishes is fine when the Hub cache holds it or the Hub is reachable:
    `specter_raw` fills it (`data/public_beir.py`)."""
    try:
        config = data.resolved()
    except ValueError as exc:
        return [Problem(f"source {data.source}", str(exc), SOURCE_FIX)]
    what = f"source {config.source}"
    state = fill_state(config.source) if config.source_kind in ("auto", "beir") else None
    if state is FillState.UNAVAILABLE:
        return [_unavailable(what, config.source)]
    if state in FILLABLE:
        return []
    try:
        kind = resolve_source_kind(config)
        if kind == "beir":
            load_beir(config.source, split=config.split)
        elif kind == "local":
            if not Path(config.source).expanduser().exists():
                raise SourceError(f"{config.source} does not exist")
            load_specter_source(config.source, split=config.split)
        else:
            resolve_hub_revision(config.source, config.revision)
    except (SourceError, ValueError) as exc:
        return [Problem(what, str(exc).split(". To use a local copy")[0], SOURCE_FIX)]
    return []


def _embedded_beir_root(evaluator: EvaluatorResource) -> Optional[Path]:
    """The BEIR root of the embedded platform the evaluator will use; None when the evaluator is elsewhere."""
    if evaluator.base_url:
        return None  # a cluster (or a platform served apart): its file:// tasks are not ours to list
    settings = PlatformSettings()
    running = platform_status(settings)
    root = running.get("beir_root") or settings.beir_root
    return Path(root) if root else None


def task_problems(urls: list[str], evaluator: EvaluatorResource, datastore: DataStoreResource) -> list[Problem]:
    problems = []
    beir_root = _embedded_beir_root(evaluator)
    for url in urls:
        what = f"task {url}"
        name = task_name(url)
        if evaluator.api_profile() == "v2":
            problems += v2_task_problems(url, name, evaluator)
            continue
        if url.startswith("fileset://"):
            problems.append(
                Problem(
                    what,
                    "fileset:// tasks are NeMo Platform v2 filesets",
                    "set EMBED_FT_NEMO_API=v2 and NEMO_URL (or --backend helix), or choose another --task",
                )
            )
            continue
        if url.startswith("file://"):
            if beir_root is None:  # a cluster's evaluator: its BEIR root is not ours to list
                continue
            state = fill_state(beir_root / name)
            if state is FillState.UNAVAILABLE:
                problems.append(_unavailable(what, str(beir_root / name)))
            elif state is None and not (beir_root / name / "corpus.jsonl").is_file():
                problems.append(
                    Problem(
                        what,
                        f"no BEIR set {name!r} in the local evaluator's BEIR root {beir_root}",
                        f"copy the BEIR folder to {beir_root / name} (or "
                        "set EMBED_FT_BEIR_ROOT to the folder holding it), "
                        "or choose another --task",
                    )
                )
            continue
        repo_id = "/".join(url.rstrip("/").split("/")[-2:])
        try:
            found = datastore.client().repo_info(repo_id) is not None
        except NemoError as exc:
            problems.append(Problem(what, f"the Data Store cannot be asked: {exc}", "check NDS_URL and NDS_TOKEN"))
            continue
        if not found:
            problems.append(
                Problem(
                    what,
                    f"no dataset repo {repo_id} in the Data Store",
                    "upload the BEIR set there first, or drop the task",
                )
            )
    return problems


def v2_task_problems(url: str, name: str, evaluator: EvaluatorResource) -> list[Problem]:
    """A v2 task is a fileset that exists, or a local BEIR set (``file://``) that can be uploaded."""
    what = f"task {url}"
    if url.startswith("fileset://"):
        workspace, fileset = url.removeprefix("fileset://").strip("/").split("/")
        try:
            found = FilesClient(evaluator.http()).get_fileset(workspace, fileset) is not None
        except NemoError as exc:
            return [
                Problem(
                    what, f"the v2 server cannot be asked: {exc}", "check NEMO_URL (NEMO_EVALUATOR_URL) and its token"
                )
            ]
        return (
            []
            if found
            else [
                Problem(
                    what,
                    f"no fileset {workspace}/{fileset} on the v2 server",
                    "upload the BEIR set there first, or drop the task",
                )
            ]
        )
    root = os.environ.get("EMBED_FT_BEIR_ROOT")
    if url.startswith("file://") and not (root and (Path(root) / name / "corpus.jsonl").is_file()):
        return [
            Problem(
                what,
                f"on the v2 profile {url} is uploaded from EMBED_FT_BEIR_ROOT/{name}, which has no corpus.jsonl",
                "set EMBED_FT_BEIR_ROOT to the folder holding it, or choose another --task",
            )
        ]
    if url.startswith("hf://"):
        return [
            Problem(
                what,
                "the v2 profile evaluates filesets, not Data Store repos",
                "use fileset://WORKSPACE/NAME or file://NAME/",
            )
        ]
    return []


def preflight_problems(job_def, spec: ExperimentSpec, resources: Mapping[str, Any]) -> list[Problem]:
    """Every reason this run of ``spec`` cannot work, before it creates anything (see the module docstring)."""
    evaluator: EvaluatorResource = resources["evaluator"]
    problems = profile_problems(spec, resources)
    graph = job_def.graph
    if not problems and graph.has_node_named("specter_raw"):
        problems += source_problems(spec.data)
    if problems:
        return problems
    if not any(graph.has_node_named(name) for name in EVALUATION_OPS):
        return []
    return task_problems(list(spec.evaluation.tasks), evaluator, resources["datastore"])


def initialized(resources: Mapping[str, Any]) -> dict[str, Any]:
    """Resources with their EnvVars resolved, for a call outside a run (the CLI's preflight)."""
    return {
        key: resource.process_config_and_initialize()
        if hasattr(resource, "process_config_and_initialize")
        else resource
        for key, resource in resources.items()
    }


@asset(
    deps=[SPEC_ASSET],  # the spec is stored first; preflight checks it
    group_name="preflight",
    kinds={"python"},
    output_required=False,
    check_specs=[
        AssetCheckSpec(PREFLIGHT_CHECK, asset=PREFLIGHT, description="The spec's profile, source and tasks are usable.")
    ],
    description="Checks the run's config, source and evaluation tasks before anything is created; when one fails, "
    "every downstream step is skipped (nothing uploaded, deployed or trained) and the check says what to fix.",
)
def preflight(
    context: AssetExecutionContext,
    datastore: DataStoreResource,
    evaluator: EvaluatorResource,
    customizer: CustomizerResource,
):
    try:
        used = run_spec(context)
        resources = {"datastore": datastore, "evaluator": evaluator, "customizer": customizer}
        problems = preflight_problems(context.job_def, used.spec, resources)
    except Failure as exc:
        problems = [Problem("spec", exc.description or str(exc), "store a spec for the experiment first")]
    lines = [p.line() for p in problems]
    if problems:
        context.log.error("Preflight failed, nothing was started: " + " | ".join(lines))
    else:
        yield Output(None, metadata={"checked": "profile, source, tasks"})
    yield AssetCheckResult(
        check_name=PREFLIGHT_CHECK,
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        description=" | ".join(lines) if problems else "profile, source and tasks are usable",
        metadata={"problems": MetadataValue.md("\n".join(f"- {line}" for line in lines) or "none")},
    )
