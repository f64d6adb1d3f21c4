"""Data Store client: namespaces (form-encoded REST) and dataset repos over the Hugging Face Hub protocol.

The repo side goes through ``huggingface_hub.HfApi(endpoint=f"{NDS_URL}/v1/hf")`` with these guards:
- the token is the Data Store's own token or ``False``: never ``None`` (that would send a locally cached
  Hugging Face token to the Data Store) and never ``""`` (an illegal empty ``Bearer`` header);
- Xet is disabled: the Data Store speaks plain LFS, not Xet;
- the real Data Store answers a commit with ``"commitUrl": ""`` which hub >= 1.0 rejects *after* the
  files were stored: the upload then verifies the files (paths and sizes) and succeeds if they are there;
- ``HF_HUB_OFFLINE`` (meant for huggingface.co) does not block calls to the Data Store the user configured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import huggingface_hub
from huggingface_hub import CommitOperationAdd, HfApi, constants as hf_constants

from .errors import (
    NemoAPIError,
    NemoResponseError,
    NotFound,
    checked_answer,
    error_for_status,
    message_from_body,
    redact,
    register_secret,
)
from .http import DEFAULT_TIMEOUT, ServiceHTTP, segment
from .v1.contract import DatastoreNamespace, DatastoreNamespaceForm

log = logging.getLogger("embed_ft.nemo")
T = TypeVar("T")
SERVICE = "Data Store"

# Toggling hub's offline flag is process-wide: serialize the calls that need it off.
_offline_lock = threading.RLock()


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level exception types of whichever HTTP client this huggingface_hub version uses."""
    errors: list[type[BaseException]] = [OSError, huggingface_hub.errors.OfflineModeIsEnabled]
    for module_name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            errors.append(__import__(module_name).TransportError)
    with contextlib.suppress(ImportError):
        import requests

        errors.append(requests.exceptions.ConnectionError)
    return tuple(errors)


_TRANSPORT_ERRORS = _transport_errors()


def _disable_xet() -> None:
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    if hasattr(hf_constants, "HF_HUB_DISABLE_XET"):
        hf_constants.HF_HUB_DISABLE_XET = True  # read at call time by is_xet_available()


@contextlib.contextmanager
def _hub_reachable() -> Iterator[None]:
    """Let huggingface_hub reach the Data Store even when HF_HUB_OFFLINE is set (it is set for huggingface.co)."""
    if not getattr(hf_constants, "HF_HUB_OFFLINE", False):
        yield
        return
    with _offline_lock:
        hf_constants.HF_HUB_OFFLINE = False
        try:
            yield
        finally:
            hf_constants.HF_HUB_OFFLINE = True


def files_url(repo_id: str) -> str:
    """The ``files_url`` an Entity Store dataset registration points at."""
    return f"hf://datasets/{repo_id}"


class DataStoreClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        hf_token: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 3,
    ) -> None:
        """``token``: the Data Store's own bearer token, if the cluster has one.

        ``hf_token`` is a huggingface.co token (for gated base models elsewhere); it is accepted only to be
        registered for redaction and is never sent to the Data Store.
        """
        self.http = ServiceHTTP(base_url, SERVICE, token=token, timeout=timeout, retries=retries)
        self.base_url = self.http.base_url
        self.hf_endpoint = f"{self.base_url}/v1/hf"
        register_secret(token)
        register_secret(hf_token)
        _disable_xet()
        token = token.strip() if token and token.strip() else None
        # False = "send no Authorization header", never None (cached HF token) nor "" (empty Bearer).
        self._hub_token: str | bool = token or False
        self.hf = HfApi(endpoint=self.hf_endpoint, token=self._hub_token, library_name="embed-ft")

    # Namespaces (REST, form-encoded on purpose: that is what the Data Store accepts)
    def ensure_namespace(self, namespace: str) -> bool:
        """Create the Data Store namespace; True if created, False if it existed (409/422, as the tutorial)."""
        try:
            form = DatastoreNamespaceForm(namespace=namespace).body()
            self.http.post("/v1/datastore/namespaces", data=form, call="create namespace")
            return True
        except NemoAPIError as exc:
            if exc.status in (409, 422):
                return False
            raise

    def get_namespace(self, namespace: str) -> dict[str, Any] | None:
        doc = self.http.get_or_none(f"/v1/datastore/namespaces/{segment(namespace)}")
        return None if doc is None else checked_answer(DatastoreNamespace, doc, "Data Store: get namespace")

    def delete_namespace(self, namespace: str) -> bool:
        try:
            self.http.delete(f"/v1/datastore/namespaces/{segment(namespace)}", call="delete namespace")
            return True
        except NemoAPIError as exc:
            if exc.status == 404:
                return False
            raise

    # Repos (Hugging Face protocol)
    def _hub(self, call: str, fn: Callable[[], T]) -> T:
        """Run one huggingface_hub call; its HTTP errors become typed, redacted NemoAPIErrors."""
        try:
            with _hub_reachable():
                return fn()
        except huggingface_hub.errors.HfHubHTTPError as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            message = ""
            if response is not None:
                with contextlib.suppress(Exception):
                    message = message_from_body(response.content, response.headers.get("content-type", ""))
            message = message or str(exc).splitlines()[0]
            if status is None:
                raise NemoAPIError(SERVICE, call, None, message) from None
            raise error_for_status(SERVICE, call, status, message) from None
        except _TRANSPORT_ERRORS as exc:
            # The hub's messages can echo request details: redacted like everything else.
            raise NemoAPIError(SERVICE, call, None, f"{type(exc).__name__}: {redact(exc)}") from None

    def create_repo(self, repo_id: str, repo_type: str = "dataset") -> str:
        """Create the repo if missing (exist_ok); returns its URL."""
        call = f"create_repo {repo_id}"
        try:
            return str(self._hub(call, lambda: self.hf.create_repo(repo_id, repo_type=repo_type, exist_ok=True)))
        except (KeyError, ValueError) as exc:
            # Some hub versions read "url" from the 409 body, which not every Data Store sends: the repo
            # exists if it can be read.
            if self.repo_info(repo_id, repo_type) is None:
                raise NemoResponseError(
                    f"{SERVICE}: {call}: the create failed ({exc!r}) and the repo cannot be read"
                ) from exc
            log.debug("create_repo %s: exists (%s: %s)", repo_id, type(exc).__name__, exc)
            return f"{self.hf_endpoint}/{repo_type}s/{repo_id}"

    def upload_files(self, repo_id: str, files: Mapping[str, str | os.PathLike[str]], message: str) -> str | None:
        """Commit ``{path_in_repo: local_path}`` in one commit; returns the commit id (or None if unknown).

        Survives the empty ``commitUrl`` of the real Data Store: if the hub rejects the answer, the files
        are listed and their sizes compared with the local ones; success if all are there, else an error
        naming the missing or different files.
        """
        if not files:
            raise ValueError(f"upload to {repo_id}: no files given")
        expected: dict[str, int] = {}
        operations = []
        for path_in_repo, local in files.items():
            local_path = Path(local)
            if not local_path.is_file():
                raise FileNotFoundError(f"upload to {repo_id}: local file for {path_in_repo!r} not found: {local_path}")
            expected[path_in_repo] = local_path.stat().st_size
            operations.append(CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(local_path)))
        call = f"upload {len(files)} files to {repo_id}"
        try:
            info = self._hub(
                call,
                lambda: self.hf.create_commit(repo_id, operations, commit_message=message, repo_type="dataset"),
            )
            return getattr(info, "oid", None)
        except ValueError as exc:  # hub >= 1.0: HfUriError (a ValueError) on the empty commitUrl
            if isinstance(exc, huggingface_hub.errors.HFValidationError):
                raise  # a bad repo id or path, raised before anything was sent
            log.info("Data Store commit to %s: the hub rejected the answer (%s); verifying the files", repo_id, exc)
            problems = self._compare(repo_id, expected)
            if problems:
                raise NemoResponseError(
                    f"{SERVICE}: {call}: the commit answer was unusable ({type(exc).__name__}: {exc}) and the files "
                    f"are not all there: {'; '.join(problems)}"
                ) from exc
            return self.head_revision(repo_id)

    def _compare(self, repo_id: str, expected: Mapping[str, int]) -> list[str]:
        remote = self.list_files(repo_id)
        problems = []
        for path, size in sorted(expected.items()):
            if path not in remote:
                problems.append(f"{path} missing")
            elif remote[path] != size:
                problems.append(f"{path} is {remote[path]} bytes remotely, {size} locally")
        return problems

    def list_files(self, repo_id: str) -> dict[str, int]:
        """``{path_in_repo: size}`` of every file in the repo (recursive)."""

        def listing() -> dict[str, int]:
            entries = self.hf.list_repo_tree(repo_id, repo_type="dataset", recursive=True)
            return {
                e.path: int(size) for e in entries if (size := getattr(e, "size", None)) is not None and _is_file(e)
            }

        return self._hub(f"list files of {repo_id}", listing)

    def download(self, repo_id: str, path: str, local_dir: str | os.PathLike[str]) -> Path:
        """Download one file into ``local_dir`` (keeping its repo path); returns the local path."""
        local = self._hub(
            f"download {path} from {repo_id}",
            lambda: self.hf.hf_hub_download(repo_id, filename=path, repo_type="dataset", local_dir=str(local_dir)),
        )
        return Path(local)

    def repo_info(self, repo_id: str, repo_type: str = "dataset") -> dict[str, Any] | None:
        """The repo's raw info document (``id``, ``sha``, ``siblings``), or None if it does not exist.

        Read as plain JSON rather than through ``HfApi.repo_info``, whose strict parsing (dates) is not
        what a Data Store promises.
        """
        path = f"/v1/hf/api/{repo_type}s/{_repo_path(repo_id)}/revision/main"
        return self.http.get_or_none(path, call=f"read repo info of {repo_id}")

    def head_revision(self, repo_id: str) -> str | None:
        """The repo's current commit sha, or None if the server does not say."""
        info = self.repo_info(repo_id)
        if info is None:
            raise NotFound(SERVICE, f"read revision of {repo_id}", 404, f"dataset repo {repo_id} not found")
        sha = info.get("sha") if isinstance(info, dict) else None
        return str(sha) if sha else None

    def delete_repo(self, repo_id: str) -> None:
        self._hub(f"delete {repo_id}", lambda: self.hf.delete_repo(repo_id, repo_type="dataset", missing_ok=True))

    files_url = staticmethod(files_url)

    def __repr__(self) -> str:
        return f"DataStoreClient({self.base_url!r})"


def _repo_path(repo_id: str) -> str:
    namespace, sep, name = repo_id.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"a Data Store repo id is 'namespace/name', got {repo_id!r}")
    return f"{segment(namespace)}/{segment(name)}"


def _is_file(entry: Any) -> bool:
    return type(entry).__name__ == "RepoFile" or getattr(entry, "type", "file") == "file"
