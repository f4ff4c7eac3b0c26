"""A loopback HTTP server that answers the Hub API calls huggingface_hub makes, for offline tests.

Point ``HF_ENDPOINT`` at it. It serves:

- ``GET /api/models?filter=...&limit=...`` (paginated with a ``Link: <...>; rel="next"`` header);
- ``HEAD|GET /{repo}/resolve/{rev}/{file}`` and ``/datasets/{repo}/resolve/{rev}/{file}`` with the
  ``X-Repo-Commit`` / ``ETag`` headers ``hf_hub_download`` needs, ``X-Error-Code: EntryNotFound``
  on a missing file;
- ``GET /api/{models,datasets}/{repo}/tree/{rev}`` and ``.../revision/{rev}`` (``list_repo_files``,
  ``repo_info``: what ``snapshot_download`` reads).

Faults are injected per request path: ``fail[path_fragment] = [429, 500, ...]`` answers those
statuses first (429 with ``Retry-After: 0``), ``delay_s`` slows every file request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeRepo:
    id: str
    files: dict[str, bytes]
    tags: list[str] = field(default_factory=list)
    library_name: str | None = "peft"
    pipeline_tag: str | None = None
    created_at: str = "2025-01-15T00:00:00.000Z"
    gated: bool = False  # file requests answer 403 GatedRepo


@dataclass
class HubState:
    models: list[FakeRepo] = field(default_factory=list)
    datasets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    page_size: int = 4
    fail: dict[str, list[int]] = field(default_factory=dict)
    delay_s: float = 0.0
    requests: list[str] = field(default_factory=list)
    authorizations: set[str] = field(default_factory=set)  # Authorization headers seen (HF_TOKEN honoured?)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            return

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _injected(self, path: str) -> bool:
            with state.lock:
                state.requests.append(f"{self.command} {path}")
                if self.headers.get("Authorization"):
                    state.authorizations.add(self.headers["Authorization"])
                for fragment, statuses in state.fail.items():
                    if fragment in path and statuses:
                        status = statuses.pop(0)
                        break
                else:
                    return False
            headers = {"Retry-After": "0"} if status == 429 else {}
            self._send(status, b'{"error": "injected"}', {"Content-Type": "application/json", **headers})
            return True

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(url.path)
            if self._injected(path):
                return
            query = urllib.parse.parse_qs(url.query)
            if path == "/api/models":
                return self._list_models(query)
            for kind in ("models", "datasets"):
                prefix = f"/api/{kind}/"
                if path.startswith(prefix) and ("/tree/" in path or "/revision/" in path):
                    repo = path[len(prefix) :].split("/tree/")[0].split("/revision/")[0]
                    return self._repo_api(kind, repo, tree="/tree/" in path)
            if "/resolve/" in path:
                return self._resolve(path)
            self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})

        def _files(self, kind: str, repo: str) -> dict[str, bytes] | None:
            if kind == "datasets":
                return state.datasets.get(repo)
            return next((m.files for m in state.models if m.id == repo), None)

        def _repo_api(self, kind: str, repo: str, tree: bool) -> None:
            """``list_repo_tree`` (tree) and ``repo_info`` (revision), as snapshot_download reads them."""
            files = self._files(kind, repo)
            if files is None:
                return self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})
            if tree:
                body = [
                    {"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for n, b in sorted(files.items())
                ]
            else:
                body = {"id": repo, "sha": SHA, "private": False, "siblings": [{"rfilename": n} for n in sorted(files)]}
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def _list_models(self, query: dict[str, list[str]]) -> None:
            wanted = set(query.get("filter", []))
            expand = set(query.get("expand", []))
            repos = [m for m in state.models if not wanted or wanted <= {*m.tags, m.library_name or ""}]
            offset = int(query.get("offset", ["0"])[0])
            limit = int(query["limit"][0]) if "limit" in query else None
            size = min(state.page_size, limit) if limit else state.page_size
            page = repos[offset : offset + size]
            items = [
                {
                    "id": m.id,
                    "modelId": m.id,
                    "sha": SHA,
                    "tags": m.tags,
                    "library_name": m.library_name,
                    "pipeline_tag": m.pipeline_tag,
                    "createdAt": m.created_at,
                    "downloads": 1,
                    "private": False,
                    **({"siblings": [{"rfilename": n} for n in sorted(m.files)]} if "siblings" in expand else {}),
                }
                for m in page
            ]
            headers = {"Content-Type": "application/json"}
            if offset + size < len(repos):
                params = {k: v for k, v in query.items() if k != "offset"}
                params["offset"] = [str(offset + size)]
                host = self.headers.get("Host")
                headers["Link"] = f'<http://{host}/api/models?{urllib.parse.urlencode(params, doseq=True)}>; rel="next"'
            self._send(200, json.dumps(items).encode(), headers)

        def _resolve(self, path: str) -> None:
            if state.delay_s:
                time.sleep(state.delay_s)
            is_dataset = path.startswith("/datasets/")
            rest = path[len("/datasets/") :] if is_dataset else path[1:]
            repo, tail = rest.split("/resolve/", 1)
            _, filename = tail.split("/", 1)
            if is_dataset:
                files = state.datasets.get(repo)
            else:
                model = next((m for m in state.models if m.id == repo), None)
                if model is not None and model.gated:
                    return self._send(403, b"{}", {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
                files = model.files if model is not None else None
            if files is None:
                return self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})
            if filename not in files:
                return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": SHA})
            body = files[filename]
            etag = hashlib.sha1(body).hexdigest()
            self._send(
                200, body, {"X-Repo-Commit": SHA, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
            )

    return Handler


class FakeHub:
    """``with FakeHub(state) as hub: hub.url``: a server on 127.0.0.1 with a free port."""

    def __init__(self, state: HubState) -> None:
        self.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
