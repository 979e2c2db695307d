"""The Java presets (java17 on bookworm, java21 and java25 on trixie) built and run under
podman: AWT headless finds fonts and renders text into a PNG, file names are UTF-8,
JAVA_VERSION follows the runtime, and the `:debug` variants carry a working JDK.

One program (compiled here with the host's javac, `--release 17`, so it runs on all three),
one lock and one build per image, shared by the module's tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_lock import run_cli
from test_sbom import deb_packages_of, trivy_image

pytestmark = [pytest.mark.network, pytest.mark.container]

# preset → (Debian release trivy must see, Java feature version)
JAVA = {
    "java21": ("debian 13.", "21"),
    "java25": ("debian 13.", "25"),
    "java17": ("debian 12.", "17"),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CHECK_JAVA = """
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.GraphicsEnvironment;
import java.awt.image.BufferedImage;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import javax.imageio.ImageIO;

public class JavaCheck {
    public static void main(String[] args) throws Exception {
        Path out = Path.of(args[0]);
        String[] families =
            GraphicsEnvironment.getLocalGraphicsEnvironment().getAvailableFontFamilyNames();
        BufferedImage image = new BufferedImage(240, 60, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = image.createGraphics();
        g.setColor(Color.WHITE);
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 24));
        g.drawString("distill \\u00fc\\u00e9", 10, 40);
        g.dispose();
        boolean written = ImageIO.write(image, "png", out.resolve("text.png").toFile());
        Path named = out.resolve("\\u00fc.txt");
        Files.writeString(named, "gr\\u00fc\\u00dfe", StandardCharsets.UTF_8);
        String listed;
        try (Stream<Path> s = Files.list(out)) {
            listed = s.map(p -> p.getFileName().toString()).sorted()
                .collect(Collectors.joining("/"));
        }
        String back = Files.readString(named, StandardCharsets.UTF_8);
        System.out.println("fonts=" + families.length);
        System.out.println("png=" + written);
        System.out.println("jnu=" + System.getProperty("sun.jnu.encoding"));
        System.out.println("listed=" + listed);
        System.out.println("roundtrip=" + back.equals("gr\\u00fc\\u00dfe")
            + " exists=" + new File(out.toFile(), "\\u00fc.txt").exists());
        System.out.println("java.version=" + System.getProperty("java.version"));
        System.out.println("JAVA_VERSION=" + System.getenv("JAVA_VERSION"));
    }
}
"""


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=False, timeout=300
    )


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    # Not under pytest's 0700 tmp dir: podman's container reads the mounted program.
    out = Path(tempfile.mkdtemp(prefix="distill-java-"))
    out.chmod(0o755)
    try:
        (out / "JavaCheck.java").write_text(CHECK_JAVA)
        subprocess.run(
            ["javac", "--release", "17", "-d", out / "classes", out / "JavaCheck.java"],
            check=True,
        )
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


class Built:
    """One preset reference, locked, built to a docker-archive and loaded into podman."""

    def __init__(self, ref: str, work: Path) -> None:
        self.ref = ref
        stem = ref.replace(":", "-")
        self.lock = work / f"{stem}.lock"
        self.archive = work / f"{stem}.docker.tar"
        proc = run_cli("-q", "lock", ref, "--arch", "amd64", "-o", str(self.lock))
        assert proc.returncode == 0, proc.stderr
        proc = run_cli(
            "-q", "build", ref, "--arch", "amd64", "--lock", str(self.lock),
            "-o", f"docker-archive:{self.archive}",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        self.tag = f"localhost/distill-java-{uuid.uuid4().hex[:12]}:{stem}"
        loaded = podman("load", "-q", "-i", str(self.archive))
        assert loaded.returncode == 0, loaded.stderr
        podman("tag", loaded.stdout.strip().split()[-1], self.tag)

    @property
    def locked(self) -> set[tuple[str, str]]:
        document = json.loads(self.lock.read_text())
        return {(p["name"], p["version"]) for p in document["archs"]["amd64"]["packages"]}

    def run(
        self, *args: str, entrypoint: str, mounts: tuple[str, ...] = (), user: str = "0:0"
    ) -> str:
        volumes = [arg for mount in mounts for arg in ("-v", mount)]
        proc = podman(
            "run", "--rm", "--network", "none", "--user", user, *volumes,
            "--entrypoint", entrypoint, self.tag, *args,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def images(work: Path) -> Iterator[dict[str, Built]]:
    built: dict[str, Built] = {}
    try:
        yield built
    finally:
        for image in built.values():
            podman("rmi", "-f", image.tag)


def image(images: dict[str, Built], ref: str, work: Path) -> Built:
    if ref not in images:
        images[ref] = Built(ref, work)
    return images[ref]


def _config_env(built: Built) -> dict[str, str]:
    proc = podman("image", "inspect", "--format", "{{json .Config.Env}}", built.tag)
    assert proc.returncode == 0, proc.stderr
    return dict(item.split("=", 1) for item in json.loads(proc.stdout))


def _run_check(built: Built, work: Path, user: str, feature: str) -> str:
    """Run JavaCheck as ``user``, check what it printed and wrote; return java.version."""
    out = Path(tempfile.mkdtemp(prefix="distill-java-out-"))
    try:
        out.chmod(0o777)
        text = built.run(
            "-cp", "/test/classes", "JavaCheck", "/out",
            entrypoint="/usr/bin/java",
            mounts=(f"{work}:/test:ro", f"{out}:/out"),
            user=user,
        )  # fmt: skip
        lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        assert int(lines["fonts"]) > 0, text
        assert lines["png"] == "true", text
        assert (out / "text.png").read_bytes()[:8] == PNG_MAGIC
        assert (out / "text.png").stat().st_size > 100
        assert lines["jnu"] == "UTF-8", text
        assert "ü.txt" in lines["listed"].split("/"), text
        assert lines["roundtrip"] == "true exists=true", text
        # The name on disk is the UTF-8 bytes of "ü", not a mangled stand-in.
        assert (out / "ü.txt").read_text() == "grüße"
        java_version, env_version = lines["java.version"], lines["JAVA_VERSION"]
        assert java_version.split(".")[0] == feature, text
        assert env_version == java_version, text
        return java_version
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("preset", JAVA)
def test_java_fonts_locale_and_version(
    preset: str, images: dict[str, Built], work: Path, tmp_path: Path
) -> None:
    release, feature = JAVA[preset]
    built = image(images, preset, work)
    # As root and as the nonroot user (65532), as distroless tests both.
    versions = {_run_check(built, work, user, feature) for user in ("0:0", "65532:65532")}
    assert len(versions) == 1
    java_version = versions.pop()
    env = _config_env(built)
    assert env["LANG"] == "C.UTF-8" and env["JAVA_VERSION"] == java_version

    # Scanners see exactly the locked Debian packages, on the preset's release.
    bom = json.loads(trivy_image(built.archive, tmp_path).read_text())
    os_name = next(
        f"{c['name']} {c.get('version', '')}"
        for c in bom["components"]
        if c.get("type") == "operating-system"
    )
    assert os_name.startswith(release), os_name
    scanned = {(name, v[0] or "") for name, v in deb_packages_of(bom).items()}
    assert scanned == built.locked


@pytest.mark.parametrize("preset", JAVA)
def test_java_debug_has_the_jdk(
    preset: str, images: dict[str, Built], work: Path, tmp_path: Path
) -> None:
    _, feature = JAVA[preset]
    built = image(images, f"{preset}:debug", work)
    names = {name for name, _ in built.locked}
    assert {"busybox-static", f"openjdk-{feature}-jdk-headless"} <= names
    assert built.run("-version", entrypoint="/usr/bin/javac").startswith(f"javac {feature}")
    script = "for t in jcmd jstack jshell java; do command -v $t; done; jcmd -l"
    tools = built.run("-c", script, entrypoint="/busybox/sh").split("\n")
    assert tools[:4] == ["/usr/bin/jcmd", "/usr/bin/jstack", "/usr/bin/jshell", "/usr/bin/java"]
    assert "sun.tools.jcmd.JCmd" in tools[4], tools  # jcmd found its own JVM
    # The JDK compiles and runs a program in the image itself.
    out = built.run(
        "-c",
        "cd /tmp && cp /test/JavaCheck.java . && javac -d c JavaCheck.java "
        "&& java -cp c JavaCheck /tmp | grep -c '^fonts='",
        entrypoint="/busybox/sh",
        mounts=(f"{work}:/test:ro",),
    )
    assert out.strip() == "1", out
    bom = json.loads(trivy_image(built.archive, tmp_path).read_text())
    assert {(name, v[0] or "") for name, v in deb_packages_of(bom).items()} == built.locked
