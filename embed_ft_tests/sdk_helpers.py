"""Helpers of the SDK conformance suite (``test_sdk_conformance.py``).

NVIDIA's official Python SDK (``nemo-microservices``, pinned in the ``test`` extra) is the oracle here: it is how
code written against a NeMo cluster talks, so the local platform must answer it unchanged. It is a test-only
dependency and never a runtime one (it retries POSTs without idempotency, which would duplicate GPU jobs).

- :func:`sdk_client`: an SDK client on the platform's bases, without retries, logging the URLs it sends; optionally
  with strict response validation (a response that does not parse into the SDK's models raises
  ``APIResponseValidationError``).
- :func:`nim_url_of`: where the platform serves the NIM routes (``NIM_URL``); the Entity Store and the other services
  are at ``NEMO_URL``.
- :func:`check_body`: an outgoing request body checked against an SDK parameter ``TypedDict``: the value types
  (pydantic ``TypeAdapter``) and, which pydantic does not do for a TypedDict, keys the SDK does not define.
- :func:`write_beir`: a tiny BEIR set (corpus, queries, qrels) that a retriever evaluation runs in a second.
- :func:`stalling_endpoint`: an embeddings URL on 127.0.0.1 that answers 503 after a delay (keeps a job running).
- :class:`RecordedCalls`: the requests our own clients (``embed_ft.nemo``) send, recorded from their HTTP session.
"""

from __future__ import annotations

import json
import threading
import time
import types
import typing
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import httpx
from nemo_microservices import NeMoMicroservices
from pydantic import TypeAdapter
from typing_extensions import get_args, get_origin, get_type_hints, is_typeddict

SDK_VERSION = "1.5.0"


# ------------------------------------------------------------------------------------------------- base URLs


def nim_url_of(settings: Any) -> str:
    """``NIM_URL`` of a running local platform: the NIM routes (``/v1/embeddings``, the served ``/v1/models``).

    A cluster serves NIM and the Entity Store at separate bases, and issue 12 asks the local platform to do the same
    (a second port or a path prefix). The platform's settings say where; until they do, both are the one port.
    """
    for attr in ("nim_url", "nim_base_url"):
        value = getattr(settings, attr, None)
        if isinstance(value, str) and value:
            return value.rstrip("/")
    return settings.base_url.rstrip("/")


# ------------------------------------------------------------------------------------------------- the SDK client


class SentLog(list):
    """``(method, url)`` of every request an SDK client sent, in order; ``queries(path)`` decodes query strings."""

    def queries(self, path: str, method: str = "GET") -> list[str]:
        return [unquote(urlsplit(url).query) for m, url in self if m == method and urlsplit(url).path == path]


def sdk_client(
    base_url: str, nim_url: str | None = None, *, strict: bool = False, timeout_s: float = 60.0
) -> tuple[NeMoMicroservices, SentLog]:
    """The SDK as a cluster user constructs it (``base_url``, ``inference_base_url``).

    ``max_retries=0``: a failure shows at once (and no POST is ever sent twice). ``strict``: the SDK's
    ``_strict_response_validation``, so every response must parse into the SDK's pydantic models (required fields,
    literal values, JSON content type) and a shape mismatch fails the call that got it. The default (lenient) is
    what users run: missing fields read as None, unknown values pass.
    """
    sent = SentLog()
    http_client = httpx.Client(
        timeout=timeout_s,
        event_hooks={"request": [lambda request: sent.append((request.method, str(request.url)))]},
    )
    client = NeMoMicroservices(
        base_url=base_url,
        inference_base_url=nim_url or base_url,
        max_retries=0,
        timeout=timeout_s,
        http_client=http_client,
        _strict_response_validation=strict,
    )
    return client, sent


# ------------------------------------------------------------------------------------------------- request bodies


def _unwrap(tp: Any) -> Any:
    """``Required[X]``, ``NotRequired[X]``, ``Annotated[X, ...]``, ``Optional`` wrappers -> ``X``."""
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            tp = get_args(tp)[0]
        elif origin is not None and getattr(origin, "_name", None) in ("Required", "NotRequired", "ReadOnly"):
            tp = get_args(tp)[0]
        elif repr(origin).endswith((".Required", ".NotRequired")):
            tp = get_args(tp)[0]
        else:
            return tp


def _validates(tp: Any, value: Any) -> bool:
    try:
        TypeAdapter(tp).validate_python(value)
        return True
    except Exception:
        return False


def unknown_keys(tp: Any, value: Any, path: str = "") -> list[str]:
    """Dotted paths of keys in ``value`` that the SDK type ``tp`` does not define (pydantic ignores them)."""
    tp = _unwrap(tp)
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return []
        hints = get_type_hints(tp, include_extras=True)
        out: list[str] = []
        for key, item in value.items():
            if key not in hints:
                out.append(f"{path}{key}")
            else:
                out += unknown_keys(hints[key], item, f"{path}{key}.")
        return out
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        candidates = [unknown_keys(arg, value, path) for arg in args if _validates(arg, value)]
        return min(candidates, key=len) if candidates else []
    if isinstance(value, dict) and len(args) == 2:  # Dict[str, X]
        return [p for key, item in value.items() for p in unknown_keys(args[1], item, f"{path}{key}.")]
    if isinstance(value, list) and len(args) == 1:  # List[X], Iterable[X], SequenceNotStr[X]
        return [p for i, item in enumerate(value) for p in unknown_keys(args[0], item, f"{path}{i}.")]
    return []


def check_body(params_type: Any, body: dict) -> list[str]:
    """Problems of ``body`` as the SDK's ``params_type``: pydantic's validation errors, then unknown keys."""
    problems: list[str] = []
    try:
        TypeAdapter(params_type).validate_python(body)
    except Exception as exc:  # pydantic.ValidationError: one line per error
        errors = getattr(exc, "errors", None)
        if callable(errors):
            problems += [f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in errors()]
        else:
            problems.append(str(exc))
    problems += [
        f"{key}: not a field of {getattr(params_type, '__name__', params_type)}"
        for key in unknown_keys(params_type, body)
    ]
    return problems


# ------------------------------------------------------------------------------------------------- our clients' calls


class RecordedCalls(list):
    """``(method, path, json body)`` of every request an ``embed_ft.nemo`` client sent through its ``ServiceHTTP``; the
    path is relative to the client's base URL (``/v1/embeddings`` whether NIM_URL is a host or a host and a path)."""

    def attach(self, http: Any) -> Any:
        """Record the requests of ``http`` (a ``ServiceHTTP``) from now on; returns it."""
        session = http.session
        send = session.request
        base_path = urlsplit(http.base_url).path.rstrip("/")  # NIM_URL may carry a path (/nim on the local platform)

        def recording(method, url, *args, **kwargs):
            path = urlsplit(url).path
            self.append(
                (
                    method.upper(),
                    path[len(base_path) :] if path.startswith(base_path + "/") else path,
                    kwargs.get("json"),
                )
            )
            return send(method, url, *args, **kwargs)

        session.request = recording
        return http

    def bodies(self, method: str, path: str) -> list[dict]:
        return [body for m, p, body in self if m == method and p == path and body is not None]


# ------------------------------------------------------------------------------------------------- data


BEIR_TOPICS = {
    "protein": "protein folding amino acid chains tertiary structure",
    "graph": "graph neural networks message passing node classification",
    "climate": "climate ocean circulation carbon cycle aerosol forcing",
    "quantum": "quantum qubit error correction superconducting circuits",
}


def write_beir(folder: Path, docs_per_topic: int = 3) -> Path:
    """A tiny BEIR set: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv`` (one query per topic)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = [], [], []
    for topic, words in BEIR_TOPICS.items():
        vocab = words.split()
        for d in range(docs_per_topic):
            picked = " ".join(vocab[(d + i) % len(vocab)] for i in range(4))
            corpus.append({"_id": f"{topic}-{d}", "title": f"{topic.title()} study {d}", "text": f"On {picked}."})
        queries.append({"_id": f"q-{topic}", "text": f"{vocab[0]} {vocab[1]} {vocab[3]}"})
        qrels += [(f"q-{topic}", f"{topic}-0", 2), (f"q-{topic}", f"{topic}-1", 1)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    )
    return folder


@contextmanager
def stalling_endpoint(delay_s: float) -> Iterator[str]:
    """``http://127.0.0.1:<port>/v1/embeddings`` that waits ``delay_s`` and then answers 503 to every request: an
    evaluation job pointed at it keeps the evaluator busy without using the CPU."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            time.sleep(delay_s)
            body = json.dumps({"detail": "stalling test endpoint"}).encode()
            try:
                self.send_response(503)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (job cancelled)
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/embeddings"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
