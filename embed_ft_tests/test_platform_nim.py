"""NIM inference of the local platform over real HTTP: /v1/embeddings (encodings, input_type, truncate,
dimensions, errors), /v1/models, and the in-process embed_texts / model_fingerprint helpers."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
import requests

from embed_ft.platform.services.embedding import embed, load_model
from embed_ft.platform.services.model_weights import bundled_minilm_path, model_fingerprint
from embed_ft.platform.services.serving import ModelNotServed, ServedModel, ServingRegistry
from embed_ft.platform.settings import service_urls
from embed_ft_tests.platform_customizer_helpers import TIMEOUT, deploy, embeddings
from embed_ft_tests.platform_server import running_platform

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PROMPTED = "local/prompted"


def _prompted_model_folder(root):
    """all-MiniLM-L6-v2 with query/passage prompts (like e5/nomic models): weights linked, config rewritten."""
    folder = root / "prompted-minilm"
    folder.mkdir()
    source = bundled_minilm_path()
    for item in source.iterdir():
        if item.name != "config_sentence_transformers.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((source / "config_sentence_transformers.json").read_text())
    config["prompts"] = {"query": "query: ", "passage": "passage: "}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nim")
    folder = _prompted_model_folder(tmp)
    with running_platform(tmp, model_roots=(tmp,)) as (base_url, settings):  # the folder is outside the home
        target = requests.post(
            f"{base_url}/v1/customization/targets",
            json={"namespace": "local", "name": "prompted@v1", "model_uri": folder.as_uri()},
            timeout=TIMEOUT,
        )
        assert target.status_code == 200, target.text
        assert deploy(base_url, "nim-ns", "base", BASE_MODEL)["status_details"]["status"] == "ready"
        assert deploy(base_url, "nim-ns", "prompted", "local/prompted@v1")["status_details"]["status"] == "ready"
        yield base_url, settings


def _vectors(response: requests.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    assert all(d["object"] == "embedding" for d in body["data"])
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float32)


def test_float_and_base64_encodings_agree(platform):
    base_url, _ = platform
    texts = ["graph neural networks for molecules", "a survey of coral reef bleaching"]
    floats = _vectors(embeddings(base_url, BASE_MODEL, texts, encoding_format="float"))
    response = embeddings(base_url, BASE_MODEL, texts, encoding_format="base64")
    assert response.status_code == 200
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in response.json()["data"]])
    assert floats.shape == decoded.shape == (2, 384)
    np.testing.assert_allclose(decoded, floats, rtol=0, atol=1e-6)
    body = response.json()
    assert body["model"] == BASE_MODEL
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 4


def test_single_string_input_and_model_behaviour_kept(platform):
    base_url, _ = platform
    single = _vectors(embeddings(base_url, BASE_MODEL, "dark matter halos"))
    assert single.shape == (1, 384)
    # all-MiniLM-L6-v2 ends in a Normalize module: unit vectors, computed by the model itself.
    np.testing.assert_allclose(np.linalg.norm(single, axis=1), 1.0, atol=1e-5)
    direct = load_model(bundled_minilm_path()).encode(["dark matter halos"], convert_to_numpy=True)
    np.testing.assert_allclose(single, direct, atol=1e-5)


def test_input_type_uses_the_models_prompts(platform):
    base_url, _ = platform
    text = ["lithium battery anodes"]
    query = _vectors(embeddings(base_url, PROMPTED, text, input_type="query"))
    passage = _vectors(embeddings(base_url, PROMPTED, text, input_type="passage"))
    plain = _vectors(embeddings(base_url, PROMPTED, text))
    assert not np.allclose(query, passage, atol=1e-4)
    assert not np.allclose(query, plain, atol=1e-4)
    np.testing.assert_allclose(
        query, _vectors(embeddings(base_url, PROMPTED, ["query: lithium battery anodes"])), atol=1e-5
    )
    np.testing.assert_allclose(
        passage, _vectors(embeddings(base_url, PROMPTED, ["passage: lithium battery anodes"])), atol=1e-5
    )
    # A model without prompts embeds both input types the same way.
    np.testing.assert_allclose(
        _vectors(embeddings(base_url, BASE_MODEL, text, input_type="query")),
        _vectors(embeddings(base_url, BASE_MODEL, text, input_type="passage")),
        atol=1e-6,
    )
    bad = embeddings(base_url, BASE_MODEL, text, input_type="document")
    assert bad.status_code == 422
    assert "input_type" in json.dumps(bad.json()["detail"])


def test_models_lists_unversioned_served_names(platform):
    base_url, _ = platform
    body = requests.get(f"{service_urls(base_url)['NIM_URL']}/v1/models", timeout=TIMEOUT).json()
    assert body["object"] == "list"
    ids = {m["id"] for m in body["data"]}
    assert ids == {BASE_MODEL, PROMPTED}
    assert all(m["object"] == "model" and m["owned_by"] for m in body["data"])
    prompted = next(m for m in body["data"] if m["id"] == PROMPTED)
    assert prompted["root"] == "local/prompted@v1"
    versioned = embeddings(base_url, "local/prompted@v1", "x")
    assert versioned.status_code == 404
    assert "unversioned" in versioned.json()["detail"]


def test_unknown_model_is_404_listing_served_models(platform):
    base_url, _ = platform
    response = embeddings(base_url, "nobody/nothing", ["x"])
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "nobody/nothing" in detail
    assert BASE_MODEL in detail
    assert PROMPTED in detail


@pytest.mark.parametrize(
    "extra, status, needle",
    [
        ({"dimensions": 128}, 400, "384"),
        ({"truncate": "NONE", "input": ["word " * 600]}, 400, "truncate"),
        ({"input": []}, 400, "non-empty"),
        ({"input": [1, 2]}, 422, "input"),
        ({"encoding_format": "int8"}, 422, "encoding_format"),
    ],
)
def test_bad_embedding_requests(platform, extra, status, needle):
    base_url, _ = platform
    body = {"model": BASE_MODEL, "input": ["hello"], **extra}
    response = requests.post(f"{service_urls(base_url)['NIM_URL']}/v1/embeddings", json=body, timeout=TIMEOUT)
    assert response.status_code == status, response.text
    assert needle in json.dumps(response.json()["detail"])


def test_dimensions_equal_to_the_model_and_truncation_of_long_input(platform):
    base_url, _ = platform
    assert _vectors(embeddings(base_url, BASE_MODEL, "x", dimensions=384)).shape == (1, 384)
    long_text = "start " + "filler " * 600 + "finish"
    end = _vectors(embeddings(base_url, BASE_MODEL, long_text, truncate="END"))
    start = _vectors(embeddings(base_url, BASE_MODEL, long_text, truncate="START"))
    assert not np.allclose(end, start, atol=1e-4)  # START keeps the end of the text, END its beginning


def test_embed_texts_in_process_matches_the_model():
    serving = ServingRegistry()
    with pytest.raises(ModelNotServed, match="served models: \\(none\\)"):
        serving.embed_texts(BASE_MODEL, ["x"])
    model = load_model(bundled_minilm_path())
    serving.add(ServedModel(BASE_MODEL, BASE_MODEL, bundled_minilm_path(), "deployment-test", model))
    vectors = serving.embed_texts(BASE_MODEL, ["a", "b", "c"], input_type="passage")
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(vectors, embed(model, ["a", "b", "c"]), atol=1e-6)


def test_model_fingerprint_follows_content(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundled_minilm_path(), copy)
    assert model_fingerprint(copy) == model_fingerprint(bundled_minilm_path())
    (copy / "README.md").write_text("docs do not change vectors")
    assert model_fingerprint(copy) == model_fingerprint(bundled_minilm_path())
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config["pooling_mode_max_tokens"] = not config.get("pooling_mode_max_tokens", False)
    pooling.write_text(json.dumps(config))
    assert model_fingerprint(copy) != model_fingerprint(bundled_minilm_path())
