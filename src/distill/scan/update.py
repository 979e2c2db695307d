"""``distill db update``: fetch the Debian security tracker's JSON from a configured URL,
conditionally (ETag / If-Modified-Since), and import it.

No URL is built in: it comes from ``--url``, ``$DISTILL_TRACKER_URL``, or the DB's memory
of the last update. The body is streamed into a temporary file under the deadlines of
:mod:`distill.net.deadline`; a body shorter than its Content-Length, or one that is not
complete tracker JSON, is refused before the DB is touched, so the old DB stays.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import requests

from distill import tempfiles
from distill.bounded import one_line
from distill.errors import DistillError
from distill.net.deadline import Deadline, Limits, read_some, send
from distill.net.http import CHUNK_SIZE, NETWORK_ERRORS, content_length, make_session
from distill.scan.db import TRACKER_SOURCE, DBStatus, Import, SourceKind, VulnDB, import_sources
from distill.scan.tracker import MAX_TRACKER

URL_ENV = "DISTILL_TRACKER_URL"
# The tracker's JSON is ~70 MB; what the import would refuse is not worth downloading.
MAX_BODY = MAX_TRACKER
_NO_URL_HINT = (
    f"pass --url URL (or set {URL_ENV}) to the Debian security tracker's JSON; the URL is "
    "remembered for later updates. Offline: `distill db import FILE`"
)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    url: str
    changed: bool  # False: the server said 304 Not Modified
    status: DBStatus | None


def tracker_url(db_path: Path, explicit: str | None) -> str:
    """The URL to update from: ``--url``, ``$DISTILL_TRACKER_URL``, else the last one used."""
    url = explicit or os.environ.get(URL_ENV, "").strip()
    if not url:
        db = VulnDB.open(db_path) if db_path.exists() else None
        if db is not None:
            with db:
                url = db.meta("tracker_url")
    if not url:
        raise DistillError(
            "no URL is configured for the Debian security tracker", hint=_NO_URL_HINT
        )
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DistillError(
            f"the tracker URL {one_line(url, 200)!r} is not an http(s) URL", hint=_NO_URL_HINT
        )
    return url


def update_tracker(db_path: Path, url: str, *, limits: Limits | None = None) -> UpdateResult:
    limits = limits or Limits.from_env()
    headers = _conditional(db_path, url)
    host = one_line(urllib.parse.urlsplit(url).netloc, 100)
    deadline = limits.transfer(f"the security tracker's JSON from {host}")
    with tempfiles.spool_tempdir("distill-tracker") as tmp:
        body = Path(tmp, "tracker.json")
        session = make_session(1)
        try:
            resp = send(
                session, "GET", url, deadline=deadline, follow_redirects=True, headers=headers
            )
            try:
                if resp.status_code == 304:
                    return UpdateResult(url, False, None)
                if resp.status_code != 200:
                    raise DistillError(
                        f"HTTP {resp.status_code} fetching the tracker's JSON: "
                        f"{one_line(url, 200)}",
                        hint="check the URL; the old DB is kept",
                    )
                _save(resp, body, deadline, url)
                etag = resp.headers.get("ETag", "")
                modified = resp.headers.get("Last-Modified", "")
            finally:
                resp.close()
        except NETWORK_ERRORS as exc:
            raise DistillError(
                f"could not fetch the tracker's JSON from {host}: {one_line(str(exc), 300)}",
                hint="check the URL and the network (http_proxy/https_proxy); the old DB is kept",
            ) from None
        except requests.RequestException as exc:
            raise DistillError(
                f"cannot fetch {one_line(url, 200)}: {one_line(str(exc), 300)}",
                hint="check the URL; the old DB is kept",
            ) from None
        finally:
            session.close()
        label = f"the tracker's JSON from {host}"
        item = Import(body, SourceKind.TRACKER, TRACKER_SOURCE, url, etag, modified, label)
        status = import_sources(db_path, [item], tracker_url=url)
    return UpdateResult(url, True, status)


def _conditional(db_path: Path, url: str) -> dict[str, str]:
    """If-None-Match / If-Modified-Since from the last update, when it was from this URL."""
    db = VulnDB.open(db_path) if db_path.exists() else None
    if db is None:
        return {}
    with db:
        source = db.source(TRACKER_SOURCE)
    if source is None or source.url != url:
        return {}
    headers = {}
    if source.etag:
        headers["If-None-Match"] = source.etag
    if source.last_modified:
        headers["If-Modified-Since"] = source.last_modified
    return headers


def _save(resp: requests.Response, body: Path, deadline: Deadline, url: str) -> None:
    declared = content_length(resp)
    encoded = "Content-Encoding" in resp.headers
    got = 0
    with open(body, "wb") as fh:
        while True:
            try:
                chunk = read_some(resp, CHUNK_SIZE, deadline, decode=True)
            except NETWORK_ERRORS:
                raise DistillError(
                    f"the tracker's JSON was cut short: the connection broke after {got} bytes"
                    + (f" of {declared}" if declared is not None else ""),
                    hint="try again (the old DB is kept)",
                ) from None
            if not chunk:
                break
            got += len(chunk)
            if got > MAX_BODY:
                raise DistillError(
                    f"the tracker's JSON from {one_line(url, 200)} is larger than {MAX_BODY} bytes",
                    hint="check the URL; the old DB is kept",
                )
            fh.write(chunk)
    if declared is not None and not encoded and got != declared:
        raise DistillError(
            f"the tracker's JSON was cut short: {got} of {declared} bytes",
            hint="the connection broke or the server is damaged; try again (the old DB is kept)",
        )
