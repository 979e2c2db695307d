"""What a verified download is asked for, apart from the network stack that fetches it:
the lock and the planners name downloads on every run, but fetch only on a cache miss, so
they import this and leave ``requests`` unimported when nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DownloadRequest:
    url: str
    sha256: str
    size: int | None
    name: str  # what the user calls it, e.g. "libc6_2.41-12_amd64.deb"
