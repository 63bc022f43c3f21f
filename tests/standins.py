"""Loopback stand-ins for the services `buildtool publish` talks to.

``FakeGitHub`` answers the REST calls of GitHub's releases API the way GitHub does (status
codes, ``upload_url`` templates, asset ``digest``/``size``/``state``) and records every
request — method, path, body size and headers — so tests can assert what was sent, and that
the token appeared in the Authorization header and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class GitHubState:
    repo: str
    token: str
    releases: dict[int, dict[str, Any]] = field(default_factory=dict)
    assets: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → asset (+ data)
    calls: list[Call] = field(default_factory=list)
    next_id: int = 1
    fail_upload_of: str | None = None  # answer 500 to this asset's upload once
    # hostile behaviours, for the security tests
    echo_credentials: bool = False  # error messages repeat the Authorization header
    redirect_to: str | None = None  # GET requests answered with a 302 to this base URL
    upload_base: str | None = None  # release upload URLs point at this base URL

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method != "GET"]


def _handler(state: GitHubState, base: list[str]) -> type[BaseHTTPRequestHandler]:
    prefix = f"/repos/{state.repo}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any = None) -> None:
            raw = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _release_json(self, rel: dict[str, Any]) -> dict[str, Any]:
            uploads = state.upload_base or base[0]
            return {**rel, "upload_url": f"{uploads}/uploads{prefix}/releases/{rel['id']}"
                    "/assets{?name,label}",
                    "html_url": f"https://github.com/{state.repo}/releases/tag/{rel['tag_name']}"}

        def _asset_json(self, a: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in a.items() if k != "data"}

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            state.calls.append(Call(self.command, self.path, dict(self.headers.items()), body))
            if state.redirect_to and self.command == "GET":
                self.send_response(302)
                self.send_header("Location", state.redirect_to + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._send(401, {"message": "Bad credentials"})
            if state.echo_credentials:
                return self._send(403, {"message": "Resource not accessible by integration "
                                        f"(credentials: {self.headers.get('Authorization')})"
                                        "\x1b[2J\x1b[31mEVIL"})
            path = url.path
            m = self.command
            if path.startswith("/uploads" + prefix + "/releases/") and m == "POST":
                rid = int(path.split("/")[-2])
                name = parse_qs(url.query)["name"][0]
                if state.fail_upload_of == name:
                    state.fail_upload_of = None
                    # GitHub leaves a "starter" asset behind when an upload breaks
                    aid = state.new_id()
                    state.assets[aid] = {"id": aid, "name": name, "size": 0,
                                         "state": "starter", "release": rid, "digest": None,
                                         "data": b""}
                    return self._send(500, {"message": "upload interrupted"})
                if any(a["name"] == name and a["release"] == rid for a in state.assets.values()):
                    return self._send(422, {"message": "Validation Failed",
                                            "errors": [{"code": "already_exists"}]})
                aid = state.new_id()
                state.assets[aid] = {"id": aid, "name": name, "size": len(body),
                                     "state": "uploaded", "release": rid,
                                     "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                                     "content_type": self.headers.get("Content-Type"),
                                     "data": body}
                return self._send(201, self._asset_json(state.assets[aid]))
            if not path.startswith(prefix):
                return self._send(404, {"message": "Not Found"})
            rest = path[len(prefix):]
            if rest.startswith("/releases/tags/") and m == "GET":
                tag = rest.rsplit("/", 1)[1]
                for rel in state.releases.values():
                    if rel["tag_name"] == tag:
                        return self._send(200, self._release_json(rel))
                return self._send(404, {"message": "Not Found"})
            if rest == "/releases" and m == "POST":
                data = json.loads(body)
                if any(r["tag_name"] == data["tag_name"] for r in state.releases.values()):
                    return self._send(422, {"message": "Validation Failed"})
                rid = state.new_id()
                state.releases[rid] = {"id": rid, "tag_name": data["tag_name"],
                                       "name": data.get("name"), "body": data.get("body"),
                                       "draft": data.get("draft", False)}
                return self._send(201, self._release_json(state.releases[rid]))
            parts = rest.strip("/").split("/")
            if parts[:2] == ["releases", "assets"] and m == "DELETE":
                state.assets.pop(int(parts[2]), None)
                return self._send(204)
            if len(parts) == 2 and parts[0] == "releases" and m == "PATCH":
                rel = state.releases[int(parts[1])]
                rel.update(json.loads(body))
                return self._send(200, self._release_json(rel))
            if len(parts) == 3 and parts[2] == "assets" and m == "GET":
                rid = int(parts[1])
                q = parse_qs(url.query)
                per_page = int(q.get("per_page", ["30"])[0])
                page = int(q.get("page", ["1"])[0])
                mine = [self._asset_json(a) for a in sorted(state.assets.values(),
                                                            key=lambda a: a["id"])
                        if a["release"] == rid]
                return self._send(200, mine[(page - 1) * per_page: page * per_page])
            return self._send(404, {"message": "Not Found"})

        do_GET = do_POST = do_PATCH = do_DELETE = _handle

    return Handler


@contextmanager
def loopback(handler: Callable[..., BaseHTTPRequestHandler],
             host: str = "127.0.0.1") -> Iterator[str]:
    """``handler`` served on ``host`` (a port of its own) while the block runs; yields the
    root URL."""
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def static_routes(routes: dict[str, bytes]) -> Iterator[str]:
    """Fixed answers by path, 404 for any other: GitHub's archive URLs
    (``/<owner>/<repo>/archive/<ref>.tar.gz``), PyPI's JSON API and its files."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    with loopback(Handler) as url:
        yield url


@contextmanager
def fake_github(repo: str = "lab/llama-builds", token: str = "ghp_" + "s3cr3t" * 6
                ) -> Iterator[tuple[str, GitHubState]]:
    """A GitHub API on 127.0.0.1; yields its root URL and its state."""
    state = GitHubState(repo=repo, token=token)
    base: list[str] = [""]

    def handler(*args: Any) -> BaseHTTPRequestHandler:
        return _handler(state, base)(*args)  # type: ignore[no-any-return]

    with loopback(handler) as url:
        base[0] = url
        yield url, state


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)


@contextmanager
def recording_server(host: str = "127.0.0.2") -> Iterator[tuple[str, Recorder]]:
    """Another host on loopback (Linux routes all of 127.0.0.0/8 to lo) that records every
    request and answers 404: where a credential must never arrive."""
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rec.calls.append(Call(self.command, self.path, dict(self.headers.items()), body))
            raw = b'{"message": "Not Found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = do_DELETE = _handle

    with loopback(Handler, host) as url:
        yield url, rec
