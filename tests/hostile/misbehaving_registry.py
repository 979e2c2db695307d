"""A registry on 127.0.0.1 that misbehaves on purpose, one way per ``mode``.

It serves one small valid image (``IMAGE_REPO`` under any repository name, tag ``1``)
through the distribution API, except where its mode says otherwise:

==========================  ======================================================
mode                        what goes wrong
==========================  ======================================================
ok                          nothing
trickle-manifest            the manifest's body comes one byte a second
trickle-headers             the manifest's status line and headers, one byte a second
trickle-blob                the layer's body, one byte a second
never-answer                the manifest request is accepted and never answered
stall-after-headers         the manifest's headers come, then nothing
stall-blob                  half the layer, then nothing
redirect-loop               the manifest redirects to itself
redirect-file               the layer redirects to ``file:///etc/passwd``
token-never                 Bearer auth whose token endpoint never answers
token-nested                a token answer nested 50,000 deep
token-huge                  a token answer of 8 MiB
token-redirect-file         the token endpoint redirects to ``file:///etc/shadow``
manifest-nested             a manifest nested 50,000 deep
manifest-huge               a manifest of 5 MiB
manifest-gzip-bomb          a gzip-encoded manifest that inflates to 1 GiB
error-nested                404 with an error body nested 50,000 deep
error-huge                  400 with 8 MiB of error text
error-controls              400 with 40 KiB of error text full of control characters
500-forever                 the layer answers 500, always
500-once                    the manifest answers 500 once, then is served
429-retry-after             the manifest answers 429 with ``Retry-After: 999999999`` once
503-odd-retry-after         the manifest answers 503 with a Retry-After of "²" once
header-flood                the manifest comes with 500 headers of 8 KiB each
length-more                 the layer declares twice its size, sends it, hangs up
length-short                the layer is cut off halfway, every time
length-less                 the manifest declares fewer bytes than it sends
upload-location-file        an upload starts with ``Location: file:///tmp/pwned``
upload-never                starting an upload is never answered
upload-stall                an upload's PUT is never read nor answered
==========================  ======================================================

Sleeps end when the server is stopped, so a test never waits on its own fixture.
"""

from __future__ import annotations

import gzip
import http.server
import json
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TAG = "1"
TOKEN_PATH = "/token"
NESTED = b"[" * 50_000 + b"]" * 50_000


@dataclass
class Image:
    manifest: bytes
    manifest_digest: str
    blobs: dict[str, bytes]  # digest -> bytes (config and layers)
    layer_digest: str


def load_image(blob_dir: Path) -> Image:
    """One tiny image, built with distill's own writer (the same as the other tests use)."""
    from analyze_images import file, simple_image

    built = simple_image(blob_dir, [file("etc/hello", b"hello\n")])
    blobs = {built.config_descriptor.digest: built.config_bytes}
    for layer in built.layers:
        with layer.open_compressed() as stored:
            blobs[layer.digest] = stored.read()
    return Image(built.manifest_bytes, built.descriptor.digest, blobs, built.layers[0].digest)


def _gzip_bomb() -> bytes:
    # 16 members of 64 MiB of zeros: 1 GiB inflated, about 1 MiB on the wire.
    member = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    return member * 16


@dataclass
class MisbehavingRegistry:
    mode: str
    image: Image
    host: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)  # bytes of bodies sent, by path
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str) -> int:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    registry: MisbehavingRegistry

    def handle_error(self, request: object, client_address: object) -> None:
        # distill hanging up on a misbehaving answer is the point; anything else is a bug here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    # --- plumbing ------------------------------------------------------------------------

    @property
    def reg(self) -> MisbehavingRegistry:
        return self.server.registry

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self._write(body)

    def _write(self, data: bytes) -> bool:
        """False when the client has gone."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return False
        with self.reg.lock:
            self.reg.sent[self.path] = self.reg.sent.get(self.path, 0) + len(data)
        return True

    def _trickle(self, data: bytes) -> None:
        for i in range(len(data)):
            if self.reg.stop.is_set() or not self._write(data[i : i + 1]):
                return
            self.reg.stop.wait(1.0)

    def _hang(self) -> None:
        self.reg.stop.wait(120)
        self.close_connection = True

    # --- the API ---------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        mode, path = self.reg.mode, self.path.partition("?")[0]
        if path == "/v2/":
            if mode.startswith("token-") and "Authorization" not in self.headers:
                realm = f"http://{self.reg.host}{TOKEN_PATH}"
                self._reply(
                    401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="test"'}
                )
            else:
                self._reply(200, b"{}", {"Content-Type": "application/json"})
        elif path == TOKEN_PATH:
            self._token(mode)
        elif "/manifests/" in path:
            self._manifest(mode)
        elif "/blobs/" in path:
            self._blob(mode, path.rsplit("/", 1)[1])
        else:
            self._reply(404)

    def _token(self, mode: str) -> None:
        if mode == "token-never":
            self._hang()
        elif mode == "token-nested":
            self._reply(200, b'{"token": ' + NESTED + b"}", {"Content-Type": "application/json"})
        elif mode == "token-huge":
            self._reply(200, b'{"token": "' + b"t" * (8 << 20) + b'"}')
        elif mode == "token-redirect-file":
            self._reply(302, headers={"Location": "file:///etc/shadow"})
        else:
            self._reply(200, b'{"token": "t", "expires_in": 300}')

    def _manifest(self, mode: str) -> None:
        image = self.reg.image
        body = image.manifest
        headers = {
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            "Docker-Content-Digest": image.manifest_digest,
        }
        if mode == "trickle-manifest":
            self._reply(200, b"", headers, length=len(body))
            self._trickle(body)
        elif mode == "trickle-headers":
            head = "HTTP/1.0 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            head += "".join(f"X-Pad-{i}: {'x' * 50}\r\n" for i in range(50))
            self._trickle(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        elif mode == "never-answer":
            self._hang()
        elif mode == "stall-after-headers":
            self._reply(200, b"", headers, length=len(body))
            self._hang()
        elif mode == "redirect-loop":
            self._reply(302, headers={"Location": self.path})
        elif mode == "manifest-nested":
            self._reply(200, NESTED, {"Content-Type": headers["Content-Type"]})
        elif mode == "manifest-huge":
            self._reply(200, b" " * (5 << 20) + body, {"Content-Type": headers["Content-Type"]})
        elif mode == "manifest-gzip-bomb":
            bomb = _gzip_bomb()
            self._reply(200, bomb, {**headers, "Content-Encoding": "gzip"})
        elif mode == "error-nested":
            self._reply(404, b'{"errors": ' + NESTED + b"}", {"Content-Type": "application/json"})
        elif mode in ("error-huge", "error-controls"):
            size = (8 << 20) if mode == "error-huge" else (40 << 10)
            text = "\x1b[31mbad\nerror: forged\r" * (size // 24)
            error = {"errors": [{"code": "DENIED", "message": text}]}
            self._reply(400, json.dumps(error).encode(), {"Content-Type": "application/json"})
        elif mode == "500-once" and self.reg.count("manifest") == 1:
            self._reply(500)
        elif mode == "429-retry-after" and self.reg.count("manifest") == 1:
            self._reply(429, headers={"Retry-After": "999999999"})
        elif mode == "503-odd-retry-after" and self.reg.count("manifest") == 1:
            # "²" (latin-1, as headers are read): a digit to str.isdigit(), not to float().
            self.send_response(503)
            self.send_header("Retry-After", "\u00b2")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "header-flood":
            self.send_response(200)
            for i in range(500):
                self.send_header(f"X-Flood-{i}", "x" * 8192)
            self.end_headers()
        elif mode == "length-less":
            self._reply(200, body, headers, length=len(body) // 2)
        else:
            self._reply(200, body, headers)

    def _blob(self, mode: str, digest: str) -> None:
        image = self.reg.image
        if self.command == "HEAD" and mode.startswith("upload-"):
            self._reply(404)  # so that a push uploads every blob
            return
        blob = image.blobs.get(digest)
        if blob is None:
            self._reply(404, b'{"errors": [{"code": "BLOB_UNKNOWN"}]}')
            return
        if digest != image.layer_digest or self.command == "HEAD":
            self._reply(200, blob)
        elif mode == "trickle-blob":
            self._reply(200, b"", length=len(blob))
            self._trickle(blob)
        elif mode == "stall-blob":
            self._reply(200, b"", length=len(blob))
            self._write(blob[: len(blob) // 2])
            self._hang()
        elif mode == "redirect-file":
            self._reply(307, headers={"Location": "file:///etc/passwd"})
        elif mode == "500-forever":
            self._reply(500, b'{"errors": [{"code": "UNKNOWN", "message": "storage on fire"}]}')
        elif mode == "length-more":
            self._reply(200, blob, length=len(blob) * 2)
        elif mode == "length-short":
            self._reply(200, blob[: len(blob) // 2], length=len(blob))
        else:
            self._reply(200, blob)

    def do_POST(self) -> None:
        mode = self.reg.mode
        if self.path.partition("?")[0] == TOKEN_PATH:
            self._token(mode)
        elif mode == "upload-never":
            self._hang()
        elif mode == "upload-location-file":
            self._reply(202, headers={"Location": "file:///tmp/pwned"})
        else:
            repo = self.path.split("/blobs/uploads")[0].removeprefix("/v2/")
            location = f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}"
            self._reply(202, headers={"Location": location, "Range": "0-0"})

    def do_PUT(self) -> None:
        if self.reg.mode == "upload-stall" and "/blobs/uploads/" in self.path:
            self._hang()  # neither reads the body nor answers
            return
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._reply(201, headers={"Location": self.path})

    def do_PATCH(self) -> None:
        self.do_PUT()

    def do_DELETE(self) -> None:
        self._reply(202)


@contextmanager
def misbehaving_registry(mode: str, image: Image) -> Iterator[MisbehavingRegistry]:
    registry = MisbehavingRegistry(mode, image)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.registry = registry
    registry.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        registry.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
