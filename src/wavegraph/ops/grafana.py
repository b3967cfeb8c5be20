"""Upload a dashboard to Grafana over its HTTP API (``grafana-client``): an idempotent upsert by uid.

:func:`upload` first refuses, before any request, a dashboard one of whose queries does not parse or
reads a metric wavegraph does not export (:func:`check_dashboard`, against the live registry). Then:

1. ``GET /api/folders``, and ``POST /api/folders`` when no folder has the title (``folder=None``: the
   General folder);
2. ``GET /api/dashboards/uid/<uid>``: the version in place, if any (404: none yet);
3. ``POST /api/dashboards/db`` with ``overwrite: true``: Grafana creates the dashboard or replaces the
   one with the same uid, in that folder, and answers with its new version.

Uploading the same dashboard twice leaves one dashboard whose version moved by one. The token is sent
as ``Authorization: Bearer <token>`` and never printed. Every refusal or failure is a
:class:`~wavegraph.errors.WavegraphError` with one sentence: :class:`DashboardRefused` (nothing was
sent) or :class:`GrafanaError` (what Grafana answered, or why it could not be reached).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import urljoin

from wavegraph.errors import WavegraphError
from wavegraph.ops.dashboard import queries
from wavegraph.ops.metric_names import InvalidQuery, exported_metric_names, unknown_metrics

__all__ = ["DashboardRefused", "GrafanaError", "UploadResult", "check_dashboard", "upload"]


class DashboardRefused(WavegraphError):
    """The dashboard is not uploaded: ``problems`` lists each bad query (panel, refId, what is wrong)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("dashboard refused, nothing was sent to Grafana: " + "; ".join(problems))
        self.problems = problems


class GrafanaError(WavegraphError):
    """Grafana refused a request or could not be reached; ``status`` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadResult:
    """What the upload did: ``created`` or ``updated`` the dashboard ``uid``, now at ``version``."""

    action: Literal["created", "updated"]
    uid: str
    version: int
    previous_version: int | None
    folder: str | None
    folder_uid: str | None
    folder_created: bool
    url: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_dashboard(model: dict[str, Any], known: frozenset[str] | None = None) -> None:
    """Raise :class:`DashboardRefused` unless ``model`` has a uid, at least one query, and every query
    parses and reads only metrics in ``known`` (default: wavegraph's live registry)."""
    exported = known if known is not None else exported_metric_names()
    problems = [] if isinstance(model.get("uid"), str) and model["uid"] else ["the dashboard has no uid"]
    found = queries(model)
    if not found:
        problems.append("the dashboard has no PromQL query")
    for q in found:
        where = f"panel {q.panel!r} query {q.ref_id or '?'}"
        try:
            unknown = unknown_metrics(q.expr, exported)
        except InvalidQuery as exc:
            problems.append(f"{where}: {exc}")
            continue
        if unknown:
            problems.append(f"{where} reads metrics wavegraph does not export: {', '.join(unknown)}")
    if problems:
        raise DashboardRefused(problems)


def upload(
    model: dict[str, Any],
    url: str,
    token: str,
    folder: str | None = None,
    *,
    timeout_s: float = 10.0,
    message: str = "wavegraph grafana upload",
) -> UploadResult:
    """Check ``model`` (:func:`check_dashboard`), then create or replace it in ``folder`` (by title)."""
    check_dashboard(model)
    import niquests
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    base = url.rstrip("/") + "/"  # grafana-client puts "api" right after the path: keep its slash
    api = GrafanaApi.from_url(base, credential=token, timeout=timeout_s)
    uid = str(model["uid"])
    step = "GET /api/folders"
    try:
        folder_uid, folder_created = None, False
        if folder:
            folders = _expect(api.folder.get_all_folders(), list, url, step)
            folder_uid = _find_folder(folders, folder)
            if folder_uid is None:
                step = "POST /api/folders"
                created = _expect(api.folder.create_folder(folder), dict, url, step, "uid")
                folder_uid, folder_created = str(created["uid"]), True
        step = f"GET /api/dashboards/uid/{uid}"
        previous: int | None
        try:
            current = _expect(api.dashboard.get_dashboard(uid), dict, url, step, "dashboard")
            previous = int(current["dashboard"].get("version") or 0)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            previous = None
        step = "POST /api/dashboards/db"
        payload: dict[str, Any] = {
            "dashboard": {**{k: v for k, v in model.items() if k not in ("id", "version")}, "id": None},
            "overwrite": True,
            "message": message,
        }
        if folder_uid is not None:
            payload["folderUid"] = folder_uid
        answer = _expect(api.dashboard.update_dashboard(payload), dict, url, step, "version")
    except GrafanaException as exc:
        raise GrafanaError(_describe(url, step, exc.status_code, exc.response), exc.status_code) from None
    except niquests.exceptions.RequestException as exc:
        raise GrafanaError(f"cannot reach Grafana at {url} ({step}): {exc}") from None
    return UploadResult(
        action="created" if previous is None else "updated",
        uid=str(answer.get("uid", uid)),
        version=int(answer["version"]),
        previous_version=previous,
        folder=folder or None,
        folder_uid=folder_uid,
        folder_created=folder_created,
        url=urljoin(base, str(answer.get("url", f"d/{uid}"))),
    )


def _expect(answer: Any, kind: type, url: str, step: str, key: str | None = None) -> Any:
    """``answer`` if it is what Grafana's API returns for ``step`` (a JSON list, or an object with
    ``key``), else a :class:`GrafanaError`: the URL is not a Grafana API (an HTML page, a proxy)."""
    if isinstance(answer, kind) and (key is None or (isinstance(answer, dict) and key in answer)):
        return answer
    what = f"a JSON {kind.__name__}" + (f" with {key!r}" if key else "")
    shown = str(answer).strip()[:120]
    raise GrafanaError(f"{url} answered {step} with {shown!r}, not {what}: is it Grafana's URL?")


def _find_folder(folders: list[Any], title: str) -> str | None:
    for entry in folders:
        if isinstance(entry, dict) and entry.get("title") == title and entry.get("uid"):
            return str(entry["uid"])
    return None


def _describe(url: str, step: str, status: int, response: Any) -> str:
    detail = response.get("message") if isinstance(response, dict) else response
    detail = str(detail or "").strip()[:300] or "no message"
    if status == 401:
        return f"Grafana at {url} refused the token (401 on {step}: {detail}): check --token / GRAFANA_TOKEN"
    if status == 403:
        return (
            f"Grafana at {url} denied {step} (403: {detail}): the token needs the Editor role "
            "(dashboards:write, folders:create)"
        )
    if status == 0:
        return f"cannot reach Grafana at {url} ({step}): {detail}"
    return f"Grafana at {url} answered {status} to {step}: {detail}"
