"""``distill rebase`` on small images made here (no network): the prefix check, the OS,
architecture and release checks and ``--force``, and the splice of layers, diff_ids,
history, config and base annotations."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from distill.build.spec import load_spec
from distill.context import Access
from distill.errors import DistillError
from distill.image.compose import compose_image, compose_index
from distill.image.config import HistoryEntry, ImageConfigSpec
from distill.image.fsentry import EntryKind, FsEntry
from distill.image.layer_blob import Compression, write_layer
from distill.image.model import Image, Index
from distill.image.platform import Platform
from distill.mutate.rebase import (
    BASE_DIGEST,
    BASE_NAME,
    Base,
    rebase,
    rebase_reference,
    recorded_base,
)
from distill.mutate.release import Release, read_release
from distill.transports import parse_reference, parse_source
from test_lock import run_cli

SDE = 1_700_000_000
AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")


def os_release(version: str, codename: str) -> bytes:
    return (
        f'PRETTY_NAME="Debian GNU/Linux {version} ({codename})"\nNAME="Debian GNU/Linux"\n'
        f'VERSION_ID="{version}"\nVERSION_CODENAME={codename}\nID=debian\n'
    ).encode()


def make_base(
    blobs: Path,
    libssl: bytes,
    *,
    version: str = "12",
    codename: str = "bookworm",
    platform: Platform = AMD64,
    release: bool = True,
) -> Image:
    """Two layers, as distill's presets have them: the system (os-release as Debian ships
    it, /etc/os-release a link) and a library whose content says its version."""
    system = [FsEntry("etc/passwd", EntryKind.FILE, 0o644, content=b"root:x:0:0::/:\n")]
    if release:
        system += [
            FsEntry("etc/os-release", EntryKind.SYMLINK, 0o777, linkname="../usr/lib/os-release"),
            FsEntry(
                "usr/lib/os-release", EntryKind.FILE, 0o644, content=os_release(version, codename)
            ),
        ]
    layers = [
        write_layer(system, blobs, compression=Compression.GZIP, source_date_epoch=SDE),
        write_layer(
            [FsEntry("usr/lib/libssl.so.3", EntryKind.FILE, 0o644, content=libssl)],
            blobs,
            compression=Compression.GZIP,
            source_date_epoch=SDE,
        ),
    ]
    history = [HistoryEntry("base: system"), HistoryEntry("base: libssl " + libssl.decode())]
    spec = ImageConfigSpec(entrypoint=("/usr/bin/python3",), env=("PATH=/usr/bin",))
    return compose_image(spec, platform, layers, source_date_epoch=SDE, history=history)


def make_app(blobs: Path, base: Image, base_name: str = "oci:old") -> Image:
    """``base`` plus one layer of its own, with a config of its own and base annotations."""
    own = write_layer(
        [FsEntry("app/hello.py", EntryKind.FILE, 0o644, content=b"print('hello')\n")],
        blobs,
        compression=Compression.ZSTD,
        source_date_epoch=SDE,
    )
    spec = ImageConfigSpec(
        entrypoint=("/usr/bin/python3", "/app/hello.py"),
        env=("PATH=/usr/bin", "APP=1"),
        user="65532",
        base_name=base_name,
        base_digest=base.digest,
        title="app",
    )
    history = [
        HistoryEntry("base: system"),
        HistoryEntry("base: libssl"),
        HistoryEntry("app: set user", empty_layer=True),
        HistoryEntry("app: hello.py"),
    ]
    return compose_image(
        spec, base.platform, [*base.layers, own], source_date_epoch=SDE, history=history
    )


@pytest.fixture
def blobs(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


def _config(image: Image) -> dict[str, object]:
    data: dict[str, object] = json.loads(image.config_bytes)
    return data


def test_splice_keeps_own_layer_takes_new_base_and_splices_config(blobs: Path) -> None:
    old = make_base(blobs, b"3.0.20")
    new = make_base(blobs, b"3.0.22")
    app = make_app(blobs, old)
    warnings: list[str] = []
    out = rebase(app, Base(old, "oci:old"), Base(new, "oci:new"), name="app", warn=warnings.append)
    assert warnings == []
    assert [layer.digest for layer in out.layers] == [
        *(layer.digest for layer in new.layers),
        app.layers[2].digest,
    ]
    assert out.layers[2] is app.layers[2]  # passed through: the same blob, not re-encoded
    assert out.diff_ids == (*new.diff_ids, app.diff_ids[2])
    config = _config(out)
    history = config["history"]
    assert isinstance(history, list)
    assert [h["created_by"] for h in history] == [
        "base: system",
        "base: libssl 3.0.22",
        "app: set user",
        "app: hello.py",
    ]
    assert history[2]["empty_layer"] is True
    assert out.config.entrypoint == ("/usr/bin/python3", "/app/hello.py")
    assert out.config.env == ("PATH=/usr/bin", "APP=1")
    assert out.config.user == "65532"
    notes = out.manifest.annotations
    assert notes[BASE_NAME] == "oci:new" and notes[BASE_DIGEST] == new.digest
    assert notes["org.opencontainers.image.title"] == "app"
    manifest = json.loads(out.manifest_bytes)
    assert manifest["annotations"] == dict(notes)
    assert manifest["config"]["digest"] == out.config.digest


def test_layers_not_the_old_base_are_refused_even_with_force(blobs: Path) -> None:
    old = make_base(blobs, b"3.0.20")
    other = make_base(blobs, b"3.0.21")
    new = make_base(blobs, b"3.0.22")
    app = make_app(blobs, old)
    for force in (False, True):
        with pytest.raises(DistillError, match=r"not built on oci:other.*layer 2") as caught:
            rebase(
                app,
                Base(other, "oci:other"),
                Base(new, "oci:new"),
                name="app",
                force=force,
                warn=lambda _: None,
            )
        assert caught.value.hint and "--old-base" in caught.value.hint
    # A "base" with more layers than the image.
    taller = compose_image(
        ImageConfigSpec(), AMD64, [*app.layers, *new.layers], source_date_epoch=SDE
    )
    with pytest.raises(DistillError, match="it has 3 layers, the base 5"):
        rebase(app, Base(taller, "t"), Base(new, "n"), name="app", warn=lambda _: None)


@pytest.mark.parametrize(
    ("new_kwargs", "message"),
    [
        ({"platform": ARM64}, r"oci:new is for linux/arm64.*oci:old is for linux/amd64"),
        ({"version": "13", "codename": "trixie"}, r"oci:new is debian 13 \(trixie\), but"),
        ({"release": False}, r"oci:new has no os-release"),
    ],
    ids=["architecture", "release", "no-os-release"],
)
def test_other_arch_or_release_refused_and_force_warns(
    blobs: Path, new_kwargs: dict[str, object], message: str
) -> None:
    old = make_base(blobs, b"3.0.20")
    new = make_base(blobs, b"3.0.22", **new_kwargs)  # type: ignore[arg-type]
    app = make_app(blobs, old)
    with pytest.raises(DistillError, match=message) as caught:
        rebase(app, Base(old, "oci:old"), Base(new, "oci:new"), name="app", warn=print)
    assert caught.value.hint and "--force" in caught.value.hint
    warnings: list[str] = []
    out = rebase(
        app,
        Base(old, "oci:old"),
        Base(new, "oci:new"),
        name="app",
        force=True,
        warn=warnings.append,
    )
    assert len(warnings) == 1 and "(--force)" in warnings[0]
    assert out.diff_ids[:2] == new.diff_ids
    assert out.platform == new.platform


def test_same_files_stored_differently_need_force(blobs: Path) -> None:
    old = make_base(blobs, b"3.0.20")
    app = make_app(blobs, old)
    relayered = [
        write_layer(
            [FsEntry("usr/lib/libssl.so.3", EntryKind.FILE, 0o644, content=b"3.0.20")],
            blobs,
            compression=Compression.ZSTD,  # the same tar, compressed otherwise
            source_date_epoch=SDE,
        )
    ]
    recompressed = compose_image(
        ImageConfigSpec(),
        AMD64,
        [old.layers[0], *relayered],
        source_date_epoch=SDE,
    )
    assert recompressed.diff_ids == old.diff_ids
    new = make_base(blobs, b"3.0.22")
    with pytest.raises(DistillError, match="stored differently"):
        rebase(app, Base(recompressed, "r"), Base(new, "n"), name="app", warn=print)
    warnings: list[str] = []
    rebase(
        app,
        Base(recompressed, "r"),
        Base(new, "n"),
        name="app",
        force=True,
        warn=warnings.append,
    )
    assert len(warnings) == 1


def test_release_is_read_through_the_link_and_whiteouts(blobs: Path) -> None:
    base = make_base(blobs, b"1")
    assert read_release(base, "b") == Release("debian", "12", "bookworm")
    gone = write_layer(
        [FsEntry("usr/lib/.wh.os-release", EntryKind.FILE, 0o644, content=b"")],
        blobs,
        compression=Compression.GZIP,
        source_date_epoch=SDE,
    )
    hidden = compose_image(ImageConfigSpec(), AMD64, [*base.layers, gone], source_date_epoch=SDE)
    assert read_release(hidden, "h") is None  # the link now points at nothing


def test_recorded_base(blobs: Path) -> None:
    old = make_base(blobs, b"3.0.20")
    assert recorded_base(make_app(blobs, old), "app") == "oci:old"
    with pytest.raises(DistillError, match="built on 'python3', which is not an image ref"):
        recorded_base(make_app(blobs, old, base_name="python3"), "app")
    with pytest.raises(DistillError, match="does not say which base"):
        recorded_base(old, "old")


def _write(top: Image | Index, where: Path) -> str:
    reference = f"oci:{where}"
    parse_reference(reference).write(top, Access())
    return reference


def test_rebase_reference_between_layouts_and_moved_tag(blobs: Path, tmp_path: Path) -> None:
    old = make_base(blobs, b"3.0.20")
    new = make_base(blobs, b"3.0.22")
    old_ref = _write(old, tmp_path / "old")
    app_ref = _write(make_app(blobs, old, base_name=old_ref), tmp_path / "app")
    new_ref = _write(new, tmp_path / "new")
    result = rebase_reference(app_ref, new_ref, f"oci:{tmp_path / 'out'}", warn=print)
    assert result.old_base == old_ref  # from the annotation
    with parse_source(f"oci:{tmp_path / 'out'}").open(Access()) as opened:
        out = opened.top
        assert isinstance(out, Image)
        assert out.digest == result.digest
        assert out.diff_ids[:2] == new.diff_ids
        own = out.layers[2]
        with own.open_compressed() as fh:
            assert fh.read() == (blobs / own.digest.removeprefix("sha256:")).read_bytes()
    # The tag the annotation names now holds another image: refused, naming both.
    _write(new, tmp_path / "old")
    with pytest.raises(DistillError, match=r"now, but .* was built on sha256"):
        rebase_reference(app_ref, new_ref, f"oci:{tmp_path / 'out2'}", warn=print)


def test_index_is_rebased_per_platform_or_refused(blobs: Path, tmp_path: Path) -> None:
    olds = [make_base(blobs, b"3.0.20", platform=p) for p in (AMD64, ARM64)]
    news = [make_base(blobs, b"3.0.22", platform=p) for p in (AMD64, ARM64)]
    apps = [make_app(blobs, old) for old in olds]
    old_ref = _write(compose_index(olds), tmp_path / "old")
    app_ref = _write(compose_index(apps, {BASE_NAME: old_ref}), tmp_path / "app")
    new_ref = _write(compose_index(news), tmp_path / "new")
    result = rebase_reference(
        app_ref, new_ref, f"oci:{tmp_path / 'out'}", old_base=old_ref, warn=print
    )
    assert isinstance(result.rebased, Index)
    images = list(result.rebased.images())
    assert [i.platform for i in images] == [AMD64, Platform.parse("linux/arm64/v8")]
    for image, new in zip(images, news, strict=True):
        assert image.diff_ids[:2] == new.diff_ids
    assert result.rebased.annotations[BASE_NAME] == new_ref
    only_amd = _write(news[0], tmp_path / "amd")
    with pytest.raises(DistillError, match="has no image for linux/arm64"):
        rebase_reference(
            app_ref, only_amd, f"oci:{tmp_path / 'out2'}", old_base=old_ref, warn=print
        )
    one = rebase_reference(
        app_ref,
        only_amd,
        f"oci:{tmp_path / 'out3'}",
        old_base=old_ref,
        access=replace(Access(), platform=AMD64),
        warn=print,
    )
    assert isinstance(one.rebased, Image)


def test_cli_rebase_warns_with_force_and_errors_cleanly(blobs: Path, tmp_path: Path) -> None:
    old = make_base(blobs, b"3.0.20")
    old_ref = _write(old, tmp_path / "old")
    app_ref = _write(make_app(blobs, old, base_name=old_ref), tmp_path / "app")
    trixie = _write(make_base(blobs, b"3.5", version="13", codename="trixie"), tmp_path / "t")
    out = f"oci:{tmp_path / 'out'}"
    refused = run_cli("rebase", app_ref, "--new-base", trixie, "-o", out)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "error:" in refused.stdout + refused.stderr
    assert not (tmp_path / "out").exists()
    forced = run_cli("rebase", app_ref, "--new-base", trixie, "-o", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "warning:" in forced.stdout + forced.stderr
    assert forced.stdout.strip().splitlines()[-1].startswith("sha256:")


# --- pockets ----------------------------------------------------------------------------


def test_pockets_key(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("extends: base\nsuite: bookworm\npockets: [bookworm, bookworm-updates]\n")
    spec = load_spec(str(spec_file))
    assert spec.suite_pockets() == ("bookworm", "bookworm-updates")
    assert spec.base == "base"
    assert load_spec("python3:nonroot").suite_pockets() == (
        "trixie",
        "trixie-updates",
        "trixie-security",
    )
    spec_file.write_text("suite: bookworm\npockets: [trixie-security, bookworm]\n")
    with pytest.raises(DistillError, match="'trixie-security' is not a pocket of bookworm"):
        load_spec(str(spec_file))
    spec_file.write_text("suite: bookworm\npockets: [bookworm-updates]\n")
    with pytest.raises(DistillError, match="bookworm itself is missing"):
        load_spec(str(spec_file))


def test_spec_base_is_the_nearest_preset(tmp_path: Path) -> None:
    (tmp_path / "common.yaml").write_text("extends: python3:nonroot\nenv: {A: '1'}\n")
    (tmp_path / "app.yaml").write_text("extends: common.yaml\n")
    assert load_spec(str(tmp_path / "app.yaml")).base == "python3:nonroot"
    assert load_spec("python3").base == "cc"
    assert load_spec("static").base is None


def test_a_docker_archive_image_rebases_from_its_compressed_base(
    blobs: Path, tmp_path: Path
) -> None:
    """A docker archive holds plain tars: their digests are diff_ids, which are compared."""
    old = make_base(blobs, b"3.0.20")
    new = make_base(blobs, b"3.0.22")
    old_ref, new_ref = _write(old, tmp_path / "old"), _write(new, tmp_path / "new")
    archive = f"docker-archive:{tmp_path / 'app.tar'}"
    parse_reference(archive).write(make_app(blobs, old), Access())
    warnings: list[str] = []
    result = rebase_reference(
        archive, new_ref, f"oci:{tmp_path / 'out'}", old_base=old_ref, warn=warnings.append
    )
    assert warnings == []
    assert isinstance(result.rebased, Image)
    assert result.rebased.diff_ids[:2] == new.diff_ids
    assert [layer.digest for layer in result.rebased.layers[:2]] == [
        layer.digest for layer in new.layers
    ]
