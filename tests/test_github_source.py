"""Importing from GitHub, against a loopback server that answers like GitHub's API and raw host."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from advisor.benchmarks.importer import build_snapshot
from advisor.benchmarks.sources import open_source, parse_github_spec
from advisor.errors import UserError
from tests.conftest import make_llm_result

SHA = "0123456789abcdef0123456789abcdef01234567"
FILES = {
    "method_comparison/MetaMathQA/results/lora--llama-3.2-3B-rank32.json": make_llm_result(),
    "method_comparison/MetaMathQA/results/oft--llama-3.2-3B-rank32.json": make_llm_result(
        "oft/llama-3.2-3B-rank32", peft_type="OFT", accuracy=0.49
    ),
    "method_comparison/MetaMathQA/temporary_results/lora--wip.json": make_llm_result("lora/llama-3.2-3B-wip"),
    "method_comparison/MetaMathQA/results/broken.json": "{oops",
    "method_comparison/README.md": "not json",
}


class FakeGitHub(BaseHTTPRequestHandler):
    failures_left: ClassVar[dict[str, int]] = {
        "tree": 1
    }  # the first tree request fails with a 502: the client must retry
    seen: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.path == "/api/repos/huggingface/peft/commits/main":
            self._send(200, json.dumps({"sha": SHA}).encode())
        elif self.path == "/api/repos/huggingface/peft/commits/nope":
            self._send(422, b'{"message": "No commit found"}')
        elif self.path == f"/api/repos/huggingface/peft/git/trees/{SHA}?recursive=1":
            if self.failures_left["tree"] > 0:
                self.failures_left["tree"] -= 1
                self._send(502, b"bad gateway")
                return
            tree = [{"path": p, "type": "blob"} for p in FILES] + [{"path": "method_comparison", "type": "tree"}]
            self._send(200, json.dumps({"sha": SHA, "tree": tree, "truncated": False}).encode())
        elif self.path.startswith(f"/raw/huggingface/peft/{SHA}/"):
            path = self.path.removeprefix(f"/raw/huggingface/peft/{SHA}/")
            body = FILES.get(path)
            if body is None:
                self._send(404, b"404: Not Found", "text/plain")
            else:
                self._send(200, (body if isinstance(body, str) else json.dumps(body)).encode(), "text/plain")
        else:
            self._send(404, b'{"message": "Not Found"}')


@pytest.fixture
def fake_github(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("PEFT_ADVISOR_GITHUB_API", f"{base}/api")
    monkeypatch.setenv("PEFT_ADVISOR_GITHUB_RAW", f"{base}/raw")
    FakeGitHub.failures_left = {"tree": 1}
    FakeGitHub.seen = []
    yield base
    server.shutdown()


def test_parse_github_spec() -> None:
    assert parse_github_spec("github") == ("huggingface", "peft", "main")
    assert parse_github_spec("github:v0.21.2") == ("huggingface", "peft", "v0.21.2")
    assert parse_github_spec("https://github.com/someone/peft/tree/my-branch") == ("someone", "peft", "my-branch")
    assert parse_github_spec("https://github.com/huggingface/peft.git") == ("huggingface", "peft", "main")
    assert parse_github_spec("/some/local/folder") is None


def test_import_from_github_over_loopback(fake_github: str) -> None:
    source = open_source("github")
    assert source.kind == "github" and source.upstream_commit == SHA
    assert [f.path.rsplit("/", 1)[-1] for f in source.files] == [
        "broken.json",
        "lora--llama-3.2-3B-rank32.json",
        "oft--llama-3.2-3B-rank32.json",
    ]
    snapshot = build_snapshot(source)
    assert sorted(r.method for r in snapshot.runs) == ["lora", "oft"]
    assert all(r.upstream_commit == SHA for r in snapshot.runs)
    assert [s["file"].rsplit("/", 1)[-1] for s in snapshot.skipped] == ["broken.json"]
    assert sum("/git/trees/" in p for p in FakeGitHub.seen) == 2  # one 502, one retry


@pytest.mark.slow
def test_github_errors_are_user_errors(fake_github: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="GitHub answered 422"):
        open_source("github:nope")
    monkeypatch.setenv("PEFT_ADVISOR_GITHUB_API", "http://127.0.0.1:9/api")  # nothing listens on port 9
    with pytest.raises(UserError, match="cannot reach GitHub"):
        open_source("github")


def test_local_path_is_not_mistaken_for_github(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        open_source(str(tmp_path / "github"))
