"""Images and places for the transport and copy tests: a runnable single-platform image
(the host's static busybox), a two-platform (amd64 + arm64) index, and a reference in
each of the five transports, with what skopeo and podman need to reach it."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from distill.context import Access, Credentials
from distill.image.compose import compose_image, compose_index
from distill.image.config import ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.model import Image, Index, Top
from distill.image.platform import Platform
from registry_fixtures import Registry

SDE = 1_700_000_000
BUSYBOX = Path("/bin/busybox")
TRANSPORTS = ["oci", "oci-archive", "docker-archive", "docker", "containers-storage"]
KEEPS_DIGESTS = {"oci", "oci-archive", "docker"}  # hold compressed blobs and manifests


def busybox_image(blob_dir: Path, message: bytes = b"hello from distill\n") -> Image:
    """A runnable image: the host's static busybox as /bin/busybox and /bin/sh."""
    assert BUSYBOX.is_file(), "busybox-static is needed for the container tests"
    entries = [
        FsEntry("bin/busybox", EntryKind.FILE, 0o755, content=BUSYBOX),
        FsEntry("bin/sh", EntryKind.SYMLINK, 0o777, linkname="busybox"),
        FsEntry("etc/passwd", EntryKind.FILE, 0o644, content=b"root:x:0:0:root:/:/bin/sh\n"),
    ]
    base = write_layer(entries, blob_dir, compression=Compression.GZIP, source_date_epoch=SDE)
    app = write_layer(
        [FsEntry("app/hello", EntryKind.FILE, 0o644, content=message)],
        blob_dir,
        compression=Compression.ZSTD,
        source_date_epoch=SDE,
    )
    spec = ImageConfigSpec(
        entrypoint=("/bin/busybox",), cmd=("cat", "/app/hello"), env=("PATH=/bin",)
    )
    return compose_image(spec, Platform.parse("linux/amd64"), [base, app], source_date_epoch=SDE)


def two_platform_index(blob_dir: Path) -> Index:
    """The busybox image for amd64 and a small arm64 image beside it."""
    amd = busybox_image(blob_dir)
    arm_layer = write_layer(
        [FsEntry("arch", EntryKind.FILE, 0o644, content=b"arm64\n")],
        blob_dir,
        compression=Compression.GZIP,
        source_date_epoch=SDE,
    )
    arm = compose_image(
        ImageConfigSpec(entrypoint=("/arch",)),
        Platform.parse("linux/arm64"),
        [arm_layer],
        source_date_epoch=SDE,
    )
    return compose_index([amd, arm])


def diff_ids(top: Top) -> list[tuple[str, ...]]:
    images = list(top.images()) if isinstance(top, Index) else [top]
    return [image.diff_ids for image in images]


@dataclass
class Places:
    """Where each transport's images go in one test, and how to reach them."""

    root: Path
    registry: Registry
    podman_names: list[str]

    @property
    def access(self) -> Access:
        assert self.registry.username and self.registry.password
        return Access(credentials=Credentials(self.registry.username, self.registry.password))

    def reference(self, transport: str, label: str) -> str:
        if transport == "oci":
            return f"oci:{self.root / label}:t1"
        if transport == "oci-archive":
            return f"oci-archive:{self.root / label}.tar:t1"
        if transport == "docker-archive":
            return f"docker-archive:{self.root / label}.docker.tar:example/{label}:t1"
        if transport == "docker":
            return f"docker://{self.registry.host}/copy/{label}:t1"
        name = f"localhost/distill-copy-{label}-{uuid.uuid4().hex[:8]}:t1"
        self.podman_names.append(name)
        return f"containers-storage:{name}"

    def skopeo(self, reference: str, *args: str) -> str:
        """``skopeo inspect`` of ``reference``, which must accept it."""
        cmd = ["skopeo", "inspect", *args]
        if reference.startswith("docker://"):
            cmd += ["--tls-verify=false", "--creds", self.registry.creds]
        return run([*cmd, reference])

    def podman_run(
        self, reference: str, *command: str, entrypoint: str | None = None, stderr: bool = False
    ) -> str:
        """Run the image ``reference`` names with podman (pulling it from where it is:
        ``remove_podman_images`` removes it afterwards by its ID)."""
        # Detached, then read from the container's log file: `podman run --rm` attached to
        # a container that exits at once now and then hands back no output (a race in
        # podman's attach), which would fail a hop that worked.
        name = f"distill-copy-{uuid.uuid4().hex[:12]}"
        cmd = ["podman", "run", "-d", "--name", name, "--log-driver", "k8s-file"]
        cmd += ["--network", "none"]
        if entrypoint is not None:
            cmd += ["--entrypoint", entrypoint]
        image = reference.removeprefix("containers-storage:")
        if reference.startswith("docker://"):  # podman run takes no --creds: pull first
            pull = ["podman", "pull", "-q", "--tls-verify=false", "--creds", self.registry.creds]
            image = run([*pull, reference]).strip()
        if reference.startswith("docker-archive:"):
            image = reference.rsplit(":", 2)[0]  # podman run takes the archive's only image
        try:
            run([*cmd, image, *command])
            code = run(["podman", "wait", name]).strip()
            logs = subprocess.run(
                ["podman", "logs", name], capture_output=True, text=True, timeout=60, check=True
            )
            assert code == "0", f"{reference} exited {code}: {logs.stderr}"
            return logs.stderr if stderr else logs.stdout
        finally:
            subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)


def run(args: list[str], *, stderr: bool = False) -> str:
    """``args``' stdout (or stderr, for programs such as ``java -version``)."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stderr if stderr else done.stdout


def remove_podman_images(names: list[str]) -> None:
    for name in names:
        subprocess.run(["podman", "rmi", "--force", name], capture_output=True, check=False)
