"""``wavegraph grafana upload | render`` against a local stand-in for Grafana's HTTP API.

No Grafana server can be obtained on these machines (it is not in Debian, and its licence keeps it
out of the package registries we can reach), so :class:`StandIn` is a small HTTP server that
implements the four endpoints the uploader calls, the way Grafana's HTTP API documents them:
``GET /api/folders``, ``POST /api/folders``, ``GET /api/dashboards/uid/<uid>`` (404 when absent) and
``POST /api/dashboards/db`` (create or, with ``overwrite``, replace by uid; the version moves by one),
each behind ``Authorization: Bearer <token>`` (401 otherwise). It records every request it receives.
The uploader itself runs for real (typer's CLI runner → ``grafana-client`` → HTTP on a socket).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wavegraph.cli import app
from wavegraph.devservices.process import free_port
from wavegraph.ops.dashboard import UID, dashboard_json

TOKEN = "glsa_test_token_0123"


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class StandIn:
    """State of the stand-in Grafana: folders, dashboards (with versions), requests, injected faults."""

    token: str = TOKEN
    folders: dict[str, str] = field(default_factory=dict)  # uid -> title
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {"dashboard", "folderUid"}
    requests: list[Request] = field(default_factory=list)
    fail: dict[str, tuple[int, Any]] = field(default_factory=dict)  # "POST /api/dashboards/db" -> answer
    url: str = ""

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if f"{method} {path}" in self.fail:
            return self.fail[f"{method} {path}"]
        if method == "GET" and path == "/api/folders":
            return 200, [{"id": i, "uid": u, "title": t} for i, (u, t) in enumerate(self.folders.items(), 1)]
        if method == "POST" and path == "/api/folders":
            if body.get("title") in self.folders.values():
                return 409, {"message": "a folder with the same name already exists"}
            uid = f"f{len(self.folders) + 1}"
            self.folders[uid] = body["title"]
            return 200, {"id": len(self.folders), "uid": uid, "title": body["title"], "version": 1}
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            stored = self.dashboards.get(path.rsplit("/", 1)[1])
            if stored is None:
                return 404, {"message": "Dashboard not found"}
            return 200, {"dashboard": stored["dashboard"], "meta": {"folderUid": stored["folderUid"]}}
        if method == "POST" and path == "/api/dashboards/db":
            dash = dict(body["dashboard"])
            uid = dash.get("uid")
            old = self.dashboards.get(uid)
            if old is not None and not body.get("overwrite"):
                return 412, {"status": "version-mismatch", "message": "The dashboard has been changed"}
            if body.get("folderUid") not in (None, *self.folders):
                return 400, {"message": "folder not found"}
            dash["version"] = 1 if old is None else old["dashboard"]["version"] + 1
            dash["id"] = old["dashboard"]["id"] if old else len(self.dashboards) + 1
            self.dashboards[uid] = {"dashboard": dash, "folderUid": body.get("folderUid")}
            return 200, {
                "id": dash["id"],
                "uid": uid,
                "url": f"/d/{uid}/{dash['title']}",
                "status": "success",
                "version": dash["version"],
                "slug": dash["title"],
            }
        return 404, {"message": "Not found"}


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = self.path.split("?", 1)[0]
            auth = self.headers.get("Authorization")
            state.requests.append(Request(self.command, path, auth, body))
            if auth != f"Bearer {state.token}":
                status, payload = 401, {"message": "invalid API key"}
            else:
                status, payload = state.answer(self.command, path, body)
            html = isinstance(payload, str)  # a page that is not the API (a proxy, a login page)
            data = payload.encode() if html else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if html else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
            pass

    return Handler


@pytest.fixture
def grafana() -> Iterator[StandIn]:
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def upload(url: str, *extra: str, token: str = TOKEN) -> Any:
    return CliRunner().invoke(app, ["grafana", "upload", "--url", url, "--token", token, *extra])


def test_first_upload_creates_the_folder_and_the_dashboard(grafana: StandIn) -> None:
    result = upload(grafana.url)
    assert result.exit_code == 0, result.output
    assert f"created dashboard {UID} (version 1) in folder 'wavegraph' (created)" in result.stdout
    assert grafana.folders == {"f1": "wavegraph"}
    stored = grafana.dashboards[UID]
    assert stored["folderUid"] == "f1"
    exprs = [t["expr"] for p in stored["dashboard"]["panels"] for t in p.get("targets", [])]
    assert exprs == [t["expr"] for p in dashboard_json()["panels"] for t in p.get("targets", [])]
    assert "max(breaker_state)" in exprs


def test_second_upload_updates_the_same_uid_and_moves_its_version(grafana: StandIn) -> None:
    assert upload(grafana.url).exit_code == 0
    again = upload(grafana.url)
    assert f"updated dashboard {UID} (version 2, was 1) in folder 'wavegraph':" in again.stdout
    result = upload(grafana.url, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["action"] == "updated"
    assert (answer["uid"], answer["previous_version"], answer["version"]) == (UID, 2, 3)
    assert answer["folder_created"] is False and answer["folder_uid"] == "f1"
    assert answer["url"] == f"{grafana.url}/d/{UID}/wavegraph"
    assert list(grafana.dashboards) == [UID] and grafana.folders == {"f1": "wavegraph"}
    posts = [r for r in grafana.requests if r.method == "POST" and r.path == "/api/dashboards/db"]
    assert [p.body["overwrite"] for p in posts] == [True, True, True]
    assert all(p.body["dashboard"]["id"] is None for p in posts)


def test_every_request_carries_the_token_as_a_bearer(grafana: StandIn) -> None:
    assert upload(grafana.url).exit_code == 0
    assert [f"{r.method} {r.path}" for r in grafana.requests] == [
        "GET /api/folders",
        "POST /api/folders",
        f"GET /api/dashboards/uid/{UID}",
        "POST /api/dashboards/db",
    ]
    assert {r.authorization for r in grafana.requests} == {f"Bearer {TOKEN}"}


def test_the_token_can_come_from_the_environment(grafana: StandIn) -> None:
    result = CliRunner().invoke(
        app, ["grafana", "upload", "--folder", ""], env={"GRAFANA_URL": grafana.url, "GRAFANA_TOKEN": TOKEN}
    )
    assert result.exit_code == 0, result.output
    assert "in the General folder" in result.stdout
    assert grafana.folders == {} and grafana.dashboards[UID]["folderUid"] is None
    assert TOKEN not in result.output


def _tampered(tmp_path: Path, expr: str) -> Path:
    model = dashboard_json()
    panel = next(p for p in model["panels"] if p.get("targets"))
    panel["targets"][0]["expr"] = expr
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(model))
    return path


def test_a_panel_reading_an_unexported_metric_is_refused_before_any_request(
    grafana: StandIn, tmp_path: Path
) -> None:
    path = _tampered(tmp_path, "sum(rate(wavegraph_no_such_metric_total[5m])) / breaker_state")
    result = upload(grafana.url, "--file", str(path))
    assert result.exit_code == 2
    assert "nothing was sent to Grafana" in result.stderr
    assert "panel 'Neo4j circuit breaker' query A" in result.stderr
    assert "wavegraph_no_such_metric_total" in result.stderr
    assert "breaker_state," not in result.stderr  # the exported one is not blamed
    assert "Traceback" not in result.output
    assert grafana.requests == []


def test_a_query_that_does_not_parse_is_refused_before_any_request(grafana: StandIn, tmp_path: Path) -> None:
    result = upload(grafana.url, "--file", str(_tampered(tmp_path, "rate(breaker_state[5m]")))
    assert result.exit_code == 2
    assert "PromQL does not parse" in result.stderr
    assert grafana.requests == []


def test_a_file_that_is_not_a_dashboard_is_refused(grafana: StandIn, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"title": "no panels"}')
    result = upload(grafana.url, "--file", str(path))
    assert result.exit_code == 2
    assert "is not a Grafana dashboard" in result.stderr
    assert grafana.requests == []


def test_a_server_error_is_one_clear_sentence_and_exit_1(grafana: StandIn) -> None:
    grafana.fail["POST /api/dashboards/db"] = (500, {"message": "database is locked"})
    result = upload(grafana.url)
    assert result.exit_code == 1
    assert f"Grafana at {grafana.url} answered 500 to POST /api/dashboards/db: database is locked" in (
        " ".join(result.stderr.split())
    )
    assert "Traceback" not in result.output
    assert UID not in grafana.dashboards


def test_a_url_that_is_not_grafanas_api_is_named(grafana: StandIn) -> None:
    grafana.fail["GET /api/folders"] = (200, "<html><body>Sign in</body></html>")
    result = upload(grafana.url)
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "answered GET /api/folders with '<html><body>Sign in</body></html>', not a JSON list" in message
    assert "is it Grafana's URL?" in message
    assert "Traceback" not in result.output and grafana.dashboards == {}


def test_a_wrong_token_is_named_as_such(grafana: StandIn) -> None:
    result = upload(grafana.url, token="s3cr3t-but-wrong")
    assert result.exit_code == 1
    assert "refused the token (401 on GET /api/folders: invalid API key)" in " ".join(result.stderr.split())
    assert "s3cr3t" not in result.output  # a token is never printed
    assert [r.authorization for r in grafana.requests] == ["Bearer s3cr3t-but-wrong"]


def test_a_grafana_that_does_not_answer_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there
    result = upload(url, "--timeout", "2")
    assert result.exit_code == 1
    assert f"cannot reach Grafana at {url} (GET /api/folders)" in " ".join(result.stderr.split())


def test_a_url_without_a_scheme_is_a_usage_error(grafana: StandIn) -> None:
    result = upload("127.0.0.1:3000")
    assert result.exit_code == 2
    assert "http(s)://host" in " ".join(result.stderr.split())


def test_render_writes_the_dashboard_and_check_finds_a_difference(tmp_path: Path) -> None:
    out = tmp_path / "wavegraph.json"
    assert CliRunner().invoke(app, ["grafana", "render", "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text()) == dashboard_json()
    assert CliRunner().invoke(app, ["grafana", "render", "--check", "--out", str(out)]).exit_code == 0
    out.write_text(out.read_text().replace("breaker_state", "breaker_status"))
    result = CliRunner().invoke(app, ["grafana", "render", "--check", "--out", str(out)])
    assert result.exit_code == 1
    assert "differs from the dashboard built from code" in result.stderr
