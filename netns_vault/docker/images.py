"""Local images, built offline: the holder (FROM scratch) and a busybox base for tests and examples.

No registry is ever contacted: the holder is built from an in-memory context whose only file is
the generated holder binary (`FROM scratch` needs no pull), and the busybox image is a
`docker import` of a rootfs tarball made here from the host's static busybox.

`python -m netns_vault.docker.images [holder|base|all|gateway]` builds what is missing and prints the
tags (scripts/make-base-image.sh runs it). `all` is holder and base; the gateway image
(netns_vault.docker.gateway_image, ~80 MB, a few seconds) only when asked for.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import time
from typing import Any

from ..errors import SystemFailure
from ..logs import get_logger
from . import holder_binary

log = get_logger(__name__)

HOLDER_REPO = "netns-vault/holder"


def _version() -> str:
    # The package attribute, or the installed metadata: a stale editable install can make
    # netns_vault a namespace package without __version__.
    try:
        from .. import __version__

        return __version__
    except ImportError:
        from importlib.metadata import version

        return version("netns-vault")


HOLDER_TAG = f"{HOLDER_REPO}:{_version()}"
HOLDER_DIGEST_LABEL = "netns-vault.holder-sha256"

BASE_TAG = "netns-vault/busybox:local"
BUSYBOX = "/bin/busybox"

# The same text as images/holder/Dockerfile (a unit test keeps them equal), minus the comments.
HOLDER_DOCKERFILE = """\
FROM scratch
COPY holder /holder
USER 65534:65534
ENTRYPOINT ["/holder"]
"""

_ROOTFS_DIRS = [(d, 0o755) for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "var")]
_ROOTFS_DIRS += [("var/www", 0o755), ("dev", 0o755), ("root", 0o700), ("tmp", 0o1777)]
_ROOTFS_DIRS += [("proc", 0o555), ("sys", 0o555)]

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _image_or_none(client: Any, ref: str) -> Any:
    import docker

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


# ---------------------------------------------------------------- holder


def holder_build_context(machine: str | None = None) -> bytes:
    """A tar archive with the Dockerfile and the holder binary, ready for `docker build`."""
    binary = holder_binary.holder_elf(machine)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add_file(tar, "Dockerfile", HOLDER_DOCKERFILE.encode(), 0o644)
        _add_file(tar, "holder", binary, 0o755)
    return buf.getvalue()


def holder_digest(machine: str | None = None) -> str:
    """sha256 of the holder binary: an image built from another binary is rebuilt."""
    return hashlib.sha256(holder_binary.holder_elf(machine)).hexdigest()


def ensure_holder_image(client: Any, machine: str | None = None) -> str:
    """Build `netns-vault/holder:<version>` unless it exists with the current binary. Returns the tag."""
    import docker

    digest = holder_digest(machine)
    image = _image_or_none(client, HOLDER_TAG)
    if image is not None and (image.labels or {}).get(HOLDER_DIGEST_LABEL) == digest:
        return HOLDER_TAG
    log.debug("docker build -t %s (FROM scratch, offline)", HOLDER_TAG)
    try:
        client.images.build(
            fileobj=io.BytesIO(holder_build_context(machine)),
            custom_context=True,
            tag=HOLDER_TAG,
            pull=False,
            rm=True,
            forcerm=True,
            labels={HOLDER_DIGEST_LABEL: digest, "netns-vault.role": "holder-image"},
        )
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise SystemFailure(f"building image {HOLDER_TAG}: {exc}") from exc
    return HOLDER_TAG


# ---------------------------------------------------------------- busybox base


def busybox_rootfs(busybox: str = BUSYBOX) -> bytes:
    """A rootfs tarball: static busybox, a symlink per applet, /etc/passwd and /etc/group."""
    with open(busybox, "rb") as f:
        binary = f.read()
    try:
        info = holder_binary.parse_elf(binary)
    except ValueError as exc:
        raise SystemFailure(f"{busybox}: {exc}") from exc
    if not info.is_static:
        raise SystemFailure(
            f"{busybox} is dynamically linked; install busybox-static (apt-get install busybox-static)"
        )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d, mode in _ROOTFS_DIRS:
            _add_dir(tar, d, mode)
        _add_file(tar, "bin/busybox", binary, 0o755)
        for applet in _applets(busybox):
            depth = applet.count("/")
            _add_symlink(tar, applet, "../" * depth + "bin/busybox")
        _add_file(tar, "etc/passwd", _PASSWD.encode(), 0o644)
        _add_file(tar, "etc/group", _GROUP.encode(), 0o644)
    return buf.getvalue()


def _applets(busybox: str) -> list[str]:
    """Where each applet's symlink goes: `busybox --list-full`, or bin/<applet> for all."""
    paths = _lines([busybox, "--list-full"]) or ["bin/" + a for a in _lines([busybox, "--list"])]
    paths = [p.lstrip("/") for p in paths]
    return sorted({p for p in paths if ".." not in p.split("/") and p != "bin/busybox"})


def _lines(argv: list[str]) -> list[str]:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (
        [ln.strip() for ln in res.stdout.splitlines() if ln.strip()] if res.returncode == 0 else []
    )


def ensure_base_image(client: Any, busybox: str = BUSYBOX) -> str:
    """`docker import` a busybox rootfs as `netns-vault/busybox:local` unless present. Returns the tag."""
    import docker

    if _image_or_none(client, BASE_TAG) is not None:
        return BASE_TAG
    repo, tag = BASE_TAG.rsplit(":", 1)
    log.debug("docker import - %s (busybox rootfs from %s)", BASE_TAG, busybox)
    try:
        client.api.import_image_from_data(
            busybox_rootfs(busybox),
            repository=repo,
            tag=tag,
            changes=['CMD ["sh"]', "LABEL netns-vault.role=base-image"],
        )
    except docker.errors.APIError as exc:
        raise SystemFailure(f"importing image {BASE_TAG}: {exc}") from exc
    if _image_or_none(client, BASE_TAG) is None:
        raise SystemFailure(f"importing image {BASE_TAG}: the engine reported no image")
    return BASE_TAG


# ---------------------------------------------------------------- tar helpers


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = int(time.time())
    return ti


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    ti = _info(name, tarfile.REGTYPE, mode)
    ti.size = len(data)
    tar.addfile(ti, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    tar.addfile(_info(name, tarfile.DIRTYPE, mode))


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    ti = _info(name, tarfile.SYMTYPE, 0o777)
    ti.linkname = target
    tar.addfile(ti)
