"""Evaluator client: the tutorial's job body, lost-answer recovery, and every documented result shape."""

from __future__ import annotations

import pytest

from embed_ft.nemo import EvaluatorClient, NemoAPIError, NemoResponseError, job_status
from embed_ft.nemo.evaluator import beir_task, parse_metrics, retriever_config, retriever_target
from embed_ft_tests.nemo_fake import fake_nemo, fast_http, tasks_shape_results  # noqa: F401  (fixture)

NIM_URL = "http://nim.test"
MODEL = "embed-sft-ns/fullweight_sft_embedding"
TUTORIAL_CONFIG = {
    "type": "retriever",
    "namespace": "embed-sft-ns",
    "tasks": {
        "my-beir-task": {
            "type": "beir",
            "dataset": {"files_url": "file://scidocs/"},
            "metrics": {
                "recall_5": {"type": "recall_5"},
                "ndcg_cut_5": {"type": "ndcg_cut_5"},
                "recall_10": {"type": "recall_10"},
                "ndcg_cut_10": {"type": "ndcg_cut_10"},
            },
        }
    },
}
TUTORIAL_TARGET = {
    "type": "retriever",
    "retriever": {
        "pipeline": {
            "query_embedding_model": {
                "api_endpoint": {"url": "http://nim.test/v1/embeddings", "model_id": MODEL, "api_key": ""}
            },
            "index_embedding_model": {
                "api_endpoint": {"url": "http://nim.test/v1/embeddings", "model_id": MODEL, "api_key": ""}
            },
            "top_k": 10,
        }
    },
}
EXPECTED = {"recall_5": 0.1764, "ndcg_cut_5": 0.1973, "recall_10": 0.2533, "ndcg_cut_10": 0.2393}


def test_builders_produce_the_tutorial_bodies():
    assert retriever_config("embed-sft-ns", beir_task("file://scidocs/")) == TUTORIAL_CONFIG
    assert retriever_target(NIM_URL + "/", MODEL, top_k=10) == TUTORIAL_TARGET
    tasks = beir_task("file://scidocs/", ["ndcg_cut_10"], "scidocs")
    tasks |= beir_task("hf://datasets/ns/held-out", ["recall_5"], "held-out")
    two = retriever_config("ns", tasks)
    assert set(two["tasks"]) == {"scidocs", "held-out"}
    with pytest.raises(ValueError, match="at least one metric"):
        beir_task("file://scidocs/", [])


def test_job_body_results_and_cancel(fake_nemo):
    evaluator = EvaluatorClient(fast_http(fake_nemo, "Evaluator"))
    job = evaluator.create_job(TUTORIAL_CONFIG, TUTORIAL_TARGET, idempotency_key="eval-key")
    assert job["id"].startswith("eval-")
    assert job_status(job) == "created"
    assert fake_nemo.requests_to("POST", "/v1/evaluation/jobs")[0].json() == {
        "config": TUTORIAL_CONFIG,
        "target": TUTORIAL_TARGET,
        "custom_fields": {"embed_ft_idempotency_key": "eval-key"},
    }
    fake_nemo.set_job_status(job["id"], "completed")
    assert job_status(evaluator.get_job(job["id"])) == "completed"
    assert parse_metrics(evaluator.get_results(job["id"])) == {"my-beir-task": EXPECTED}
    assert job_status(evaluator.cancel_job(job["id"])) == "completed"  # already ended: returned, not raised


def test_an_evaluation_job_whose_answer_was_lost_is_found_by_key(fake_nemo):
    evaluator = EvaluatorClient(fast_http(fake_nemo, "Evaluator"))
    evaluator.create_job(TUTORIAL_CONFIG, TUTORIAL_TARGET, idempotency_key="older")
    fake_nemo.reset_after_handling(method="POST", path="/v1/evaluation/jobs")
    job = evaluator.create_job(TUTORIAL_CONFIG, TUTORIAL_TARGET, idempotency_key="baseline-scidocs-v1")
    assert job.recovered is True
    assert job["custom_fields"]["embed_ft_idempotency_key"] == "baseline-scidocs-v1"
    assert len(fake_nemo.eval_jobs) == 2
    assert len(fake_nemo.requests_to("POST", "/v1/evaluation/jobs")) == 2


def test_an_api_key_echoed_back_in_an_error_is_redacted(fake_nemo):
    evaluator = EvaluatorClient(fast_http(fake_nemo, "Evaluator"))
    target = retriever_target(NIM_URL, MODEL, api_key="nvapi-never-show-me")
    fake_nemo.fail_next(
        1, status=422, method="POST", body=lambda req: {"detail": f"invalid target: {req.body.decode()}"}
    )
    with pytest.raises(NemoAPIError) as info:
        evaluator.create_job(TUTORIAL_CONFIG, target)
    assert "nvapi-never-show-me" not in str(info.value)
    assert "HTTP 422" in str(info.value)
    assert "invalid target" in str(info.value)


def test_groups_shape():
    results = {
        "groups": {
            "evaluation": {
                "metrics": {
                    "evaluation": {"scores": {"recall_5": {"value": 0.2, "stats": {}}, "ndcg_cut_10": {"value": 0.3}}}
                }
            }
        }
    }
    assert parse_metrics(results) == {"evaluation": {"recall_5": 0.2, "ndcg_cut_10": 0.3}}


def test_older_list_forms():
    nested = {
        "tasks": [
            {
                "name": "scidocs",
                "metrics": [
                    {"name": "retriever.recall_5", "value": 0.11},
                    {"name": "retriever.ndcg_cut_10", "value": "0.22"},
                ],
            }
        ]
    }
    assert parse_metrics(nested) == {"scidocs": {"recall_5": 0.11, "ndcg_cut_10": 0.22}}
    rows = [
        {"task": "scidocs", "metric": "retriever.recall_10", "value": 0.3},
        {"task": "held-out", "metric": "ndcg_cut_5", "value": 0.4},
    ]
    assert parse_metrics(rows) == {"scidocs": {"recall_10": 0.3}, "held-out": {"ndcg_cut_5": 0.4}}
    scores_list = {"tasks": {"t": {"metrics": {"retriever.x": {"scores": [{"name": "recall_5", "value": 0.5}]}}}}}
    assert parse_metrics(scores_list) == {"t": {"recall_5": 0.5}}


def test_recorded_tasks_shape_with_several_tasks():
    results = tasks_shape_results("eval-1", "scidocs")
    results["tasks"] |= tasks_shape_results("eval-1", "held-out")["tasks"]
    assert parse_metrics(results) == {"scidocs": EXPECTED, "held-out": EXPECTED}


@pytest.mark.parametrize(
    ("results", "message"),
    [
        (
            {"job": "eval-1", "summary": {"ok": True}},
            r"no task metrics found .* keys \{'job': 'str', 'summary': 'dict'\}",
        ),
        ({"tasks": {"t": {"metrics": {}}}}, "no task metrics found"),
        ([], "a list of 0 items"),
        ("oops", "got a str"),
        (
            {"tasks": {"t": {"metrics": {"retriever.recall_5": {"scores": {"recall_5": {"value": "NaN"}}}}}}},
            "not finite",
        ),
        (
            {"tasks": {"t": {"metrics": {"retriever.recall_5": {"scores": {"recall_5": {"value": None}}}}}}},
            "no numeric value",
        ),
    ],
)
def test_unknown_or_broken_shapes_raise_clear_errors(results, message):
    with pytest.raises(NemoResponseError, match=message):
        parse_metrics(results)
