"""A stand-in for the Hugging Face hub on 127.0.0.1 (standard library only), serving local folders as repositories.

It answers what huggingface_hub's `HfApi.model_info(files_metadata=True)` and `snapshot_download` ask: the model's
file list with sizes, the file tree of a commit, and each file (HEAD for its metadata, GET for its bytes). An
unknown repository answers 401 "RepoNotFound" as the real hub does. `served` records every file GET, so a test
can tell what was downloaded; `slow` delays the files of some repositories to keep their download in flight.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from pathlib import Path


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class FakeHub:
    def __init__(self, repos: dict[str, Path], slow: dict[str, float] | None = None):
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.slow = slow or {}
        self.served: list[tuple[str, str]] = []  # (repo, file) of every file GET
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo: str) -> dict[str, Path]:
        folder = self.repos[repo]
        return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}

    def _handler(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the name http.server calls
                hub._answer(self, body=True)

            def do_HEAD(self):  # noqa: N802
                hub._answer(self, body=False)

            def log_message(self, *args):
                pass

        return Handler

    def _find(self, rest: str) -> tuple[str, str] | None:
        """(repo, what follows it) for a path that starts with a known repository id."""
        for repo in sorted(self.repos, key=len, reverse=True):
            if rest == repo or rest.startswith(repo + "/"):
                return repo, rest[len(repo) + 1:]
        return None

    def _answer(self, request, body: bool) -> None:
        path = request.path.split("?", 1)[0]
        if path.startswith("/api/models/"):
            found = self._find(path[len("/api/models/"):])
            if found is None:
                return self._send(request, 401, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            repo, tail = found
            sha = _sha(repo)
            if tail.startswith("tree/"):
                data = [{"type": "file", "oid": _sha(f"{repo}/{name}"), "size": p.stat().st_size, "path": name}
                        for name, p in self.files(repo).items()]
            else:  # the model's information, with each file's size
                data = {"id": repo, "sha": sha, "siblings": [{"rfilename": name, "size": p.stat().st_size}
                                                             for name, p in self.files(repo).items()]}
            return self._send(request, 200, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)
        found = self._find(path[1:])
        if found is None or not found[1].startswith("resolve/"):
            return self._send(request, 404, b"{}", {"X-Error-Code": "EntryNotFound"}, body)
        repo, tail = found
        name = tail.split("/", 2)[2]  # resolve/<revision>/<file>
        file = self.files(repo).get(name)
        if file is None:
            return self._send(request, 404, b"{}", {"X-Error-Code": "EntryNotFound"}, body)
        headers = {"X-Repo-Commit": _sha(repo), "ETag": f'"{_sha(f"{repo}/{name}")}"',
                   "Content-Type": "application/octet-stream"}
        if body:
            self.served.append((repo, name))
            time.sleep(self.slow.get(repo, 0.0))
        self._send(request, 200, file.read_bytes(), headers, body)

    @staticmethod
    def _send(request, code: int, data: bytes, headers: dict[str, str], body: bool = True) -> None:
        request.send_response(code)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if body:
            request.wfile.write(data)
