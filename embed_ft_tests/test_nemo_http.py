"""ServiceHTTP against the fake NeMo server: auth headers, which calls are retried, typed and redacted errors."""

from __future__ import annotations

import logging
import socket

import pytest

from embed_ft.nemo import EntityStoreClient
from embed_ft.nemo.errors import (
    NemoAPIError,
    NemoConnectionError,
    NemoResponseError,
    NemoTimeout,
    NotFound,
    ServerError,
    Unauthorized,
    redact,
    redact_document,
    register_secret,
)
from embed_ft.nemo.http import ServiceHTTP, outcome_unknown
from embed_ft_tests.nemo_fake import fake_nemo, fast_http  # noqa: F401  (fixture)


@pytest.mark.parametrize("token", [None, "", "   "])
def test_no_authorization_header_without_a_token(fake_nemo, token):
    http = fast_http(fake_nemo, "Entity Store", token=token)
    http.post("/v1/namespaces", json={"id": "ns"})
    http.get("/v1/namespaces/ns")
    assert len(fake_nemo.requests) == 2
    for request in fake_nemo.requests:
        assert "authorization" not in request.headers
        assert "wandb-api-key" not in request.headers


def test_bearer_token_and_wandb_key_are_sent_when_set(fake_nemo):
    http = fast_http(fake_nemo, "Customizer", token="tok-abcdef", wandb_api_key="wandb-key-123456")
    http.get("/v1/customization/targets")
    (request,) = fake_nemo.requests
    assert request.headers["authorization"] == "Bearer tok-abcdef"
    assert request.headers["wandb-api-key"] == "wandb-key-123456"


def test_get_is_retried_on_503_then_succeeds(fake_nemo):
    http = fast_http(fake_nemo, "Entity Store", retries=3)
    http.post("/v1/namespaces", json={"id": "ns"})
    fake_nemo.fail_next(2, status=503, method="GET", path="/v1/namespaces/ns")
    assert http.get("/v1/namespaces/ns")["id"] == "ns"
    assert len(fake_nemo.requests_to("GET", "/v1/namespaces/ns")) == 3


def test_get_gives_up_after_its_retries_with_a_typed_server_error(fake_nemo):
    http = fast_http(fake_nemo, "Entity Store", retries=2)
    fake_nemo.fail_next(10, status=502, method="GET", path="/v1/namespaces/ns", body={"detail": "upstream down"})
    with pytest.raises(ServerError) as info:
        http.get("/v1/namespaces/ns")
    assert len(fake_nemo.requests_to("GET", "/v1/namespaces/ns")) == 3
    assert info.value.status == 502
    assert str(info.value) == "Entity Store: GET /v1/namespaces/ns failed with HTTP 502: upstream down"


def test_delete_is_retried_on_500(fake_nemo):
    http = fast_http(fake_nemo, "Entity Store")
    fake_nemo.add_model("ns", "m1")
    fake_nemo.fail_next(1, status=500, method="DELETE")
    assert EntityStoreClient(http).delete_model("ns", "m1") is True
    assert len(fake_nemo.requests_to("DELETE", "/v1/models/ns/m1")) == 2
    assert ("ns", "m1") not in fake_nemo.models


def test_post_is_never_retried_on_503(fake_nemo):
    http = fast_http(fake_nemo, "Entity Store", retries=3)
    fake_nemo.fail_next(1, status=503, method="POST", path="/v1/namespaces")
    with pytest.raises(ServerError) as info:
        http.post("/v1/namespaces", json={"id": "ns"})
    assert info.value.status == 503
    assert len(fake_nemo.requests_to("POST", "/v1/namespaces")) == 1
    assert "ns" not in fake_nemo.namespaces
    assert not outcome_unknown(info.value)  # 503: the service refused; nothing to look up


def test_connection_refused_is_typed_and_known_not_sent():
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = ServiceHTTP(f"http://127.0.0.1:{port}", "Customizer", retries=1, backoff=0.01, timeout=(1.0, 1.0))
    with pytest.raises(NemoConnectionError) as info:
        http.post("/v1/customization/jobs", json={})
    assert info.value.request_sent is False
    assert not outcome_unknown(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "Customizer: POST /v1/customization/jobs" in str(info.value)


def test_read_timeout_is_typed_and_leaves_the_outcome_unknown(fake_nemo):
    http = fast_http(fake_nemo, "Entity Store", timeout=(2.0, 0.3), retries=0)
    fake_nemo.delay_after_handling(1.5, method="POST", path="/v1/namespaces")
    with pytest.raises(NemoTimeout) as info:
        http.post("/v1/namespaces", json={"id": "slow"})
    assert info.value.request_sent is True
    assert outcome_unknown(info.value)
    assert "read timeout" in str(info.value)
    assert "slow" in fake_nemo.namespaces  # the server did the work; only the answer was lost


def test_reset_after_sending_is_typed_and_leaves_the_outcome_unknown(fake_nemo):
    http = fast_http(fake_nemo, "Entity Store")
    fake_nemo.reset_after_handling(method="POST", path="/v1/namespaces")
    with pytest.raises(NemoConnectionError) as info:
        http.post("/v1/namespaces", json={"id": "ns"})
    assert info.value.request_sent is True
    assert len(fake_nemo.requests_to("POST", "/v1/namespaces")) == 1


def test_errors_name_service_call_status_and_server_message(fake_nemo):
    http = fast_http(fake_nemo, "Entity Store")
    with pytest.raises(NotFound) as info:
        http.get("/v1/datasets/ns/missing", call="read dataset")
    text = str(info.value)
    assert (
        text
        == "Entity Store: GET /v1/datasets/ns/missing (read dataset) failed with HTTP 404: dataset ns/missing not found"
    )
    assert (info.value.service, info.value.status) == ("Entity Store", 404)


def test_401_is_unauthorized_and_long_text_messages_are_truncated(fake_nemo):
    http = fast_http(fake_nemo, "NIM")
    fake_nemo.fail_next(1, status=401, body=b"denied " + b"x" * 3000)
    with pytest.raises(Unauthorized) as info:
        http.get("/v1/models")
    assert info.value.message.startswith("denied x")
    assert len(info.value.message) <= 500


def test_a_secret_echoed_by_the_server_is_redacted_from_errors_and_logs(fake_nemo, caplog):
    token, wandb_key = "tok-very-secret-9f3a", "wandb-secret-77c1"
    http = fast_http(fake_nemo, "Customizer", token=token, wandb_api_key=wandb_key)
    fake_nemo.fail_next(
        1,
        status=400,
        body=lambda req: {
            "detail": f"rejected headers authorization={req.headers['authorization']} "
            f"key={req.headers['wandb-api-key']}"
        },
    )
    caplog.set_level(logging.DEBUG, logger="embed_ft.nemo")
    with pytest.raises(NemoAPIError) as info:
        http.post("/v1/customization/jobs", json={"name": "x"})
    http.get("/v1/customization/targets")  # a successful call logs too
    text = str(info.value) + repr(info.value.args) + info.value.message
    assert token not in text
    assert wandb_key not in text
    assert "***" in text
    assert "HTTP 400" in text
    assert caplog.records, "the client logs its calls at DEBUG"
    for record in caplog.records:
        assert token not in record.getMessage()
        assert wandb_key not in record.getMessage()


def test_secret_extra_headers_are_registered_for_redaction(fake_nemo):
    fast_http(fake_nemo, "Customizer", extra_headers={"wandb-api-key": "wb-extra-header-9911", "X-Trace": "t-1"})
    assert redact("key wb-extra-header-9911 trace t-1") == "key *** trace t-1"


def test_redact_masks_registered_values_and_secret_shapes():
    register_secret("reg-secret-value-1")
    text = redact(
        "x reg-secret-value-1 Authorization: Bearer abc.def "
        '{"api_key": "nvapi-123", "api_key": ""} hf_AbCdEf123456 max_tokens=5'
    )
    assert "reg-secret-value-1" not in text
    assert "abc.def" not in text
    assert "nvapi-123" not in text
    assert "hf_AbCdEf123456" not in text
    assert '"api_key": ""' in text  # empty keys and look-alikes are left alone
    assert "max_tokens=5" in text
    assert redact("short", secrets=["abc"]) == "short"
    doc = redact_document({"target": {"api_endpoint": {"url": "http://nim", "api_key": "k-123456", "model_id": "m"}}})
    assert doc == {"target": {"api_endpoint": {"url": "http://nim", "api_key": "***", "model_id": "m"}}}


def test_a_2xx_body_that_is_not_json_raises_a_response_error(fake_nemo):
    http = fast_http(fake_nemo, "Entity Store")
    fake_nemo.fail_next(1, status=200, body=b"<html>login page</html>")
    with pytest.raises(NemoResponseError, match=r"Entity Store: GET /v1/namespaces/ns answered 200 .*not JSON"):
        http.get("/v1/namespaces/ns")


def test_list_models_follows_pagination_with_bracket_filters(fake_nemo):
    for i in range(25):
        fake_nemo.add_model("ns", f"m{i:02d}")
    fake_nemo.add_model("other", "x")
    client = EntityStoreClient(fast_http(fake_nemo, "Entity Store"))
    models = client.list_models(namespace="ns", page_size=10)
    assert len(models) == 25
    assert {m["namespace"] for m in models} == {"ns"}
    assert models[0]["name"] == "m24"  # sort=-created_at: newest first
    pages = fake_nemo.requests_to("GET", "/v1/models")
    assert [p.query["page"] for p in pages] == ["1", "2", "3"]
    assert all(p.query["filter[namespace]"] == "ns" and p.query["sort"] == "-created_at" for p in pages)


def test_base_url_must_be_http():
    with pytest.raises(ValueError, match="must start with http"):
        ServiceHTTP("nemo.test", "Entity Store")


def test_errors_survive_pickling_with_their_fields():
    import pickle

    error = NemoConnectionError(
        "Customizer", "POST /v1/customization/jobs", "http://nemo.test", "reset", request_sent=True
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is NemoConnectionError
    assert str(copy) == str(error)
    assert copy.request_sent is True
    served = pickle.loads(pickle.dumps(NotFound("Entity Store", "GET /v1/models/a/b", 404, "model a/b not found")))
    assert (served.status, served.message) == (404, "model a/b not found")
