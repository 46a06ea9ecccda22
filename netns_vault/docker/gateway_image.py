"""The gateway image, built offline from this host's own files (no registry, no base image).

    netns-vault/gateway-rootfs:<fingerprint>   `docker import` of a rootfs assembled here:
        the host's python3 and its standard library, the shared libraries `ldd` names, the
        netns-vault runtime dependencies (pyroute2, python-iptables, typer, rich, ...), the
        netns_vault package, wireguard-go, iptables-legacy with libxtables/libiptc and the
        xtables extensions, and a static busybox for a shell
    netns-vault/gateway:<version>              images/gateway/Dockerfile FROM that rootfs

`ensure_gateway_image(client)` builds what is missing or stale (a fingerprint of every file that
goes in is kept as a label) and returns the tag. `python -m netns_vault.docker.build_images gateway`
(scripts/make-base-image.sh gateway) does the same from a shell.

The rootfs is a plain copy of the host's binaries: it runs on hosts of the same architecture and
a kernel the host's glibc supports, which is every host that can run this Docker engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from ..errors import SystemFailure
from ..logs import get_logger
from . import images

log = get_logger(__name__)

GATEWAY_REPO = "netns-vault/gateway"
GATEWAY_TAG = f"{GATEWAY_REPO}:{images._version()}"
ROOTFS_REPO = "netns-vault/gateway-rootfs"
FINGERPRINT_LABEL = "netns-vault.gateway-fingerprint"
SITE_DIR = "opt/netns-vault/lib"  # PYTHONPATH in the image

# The same text as images/gateway/Dockerfile (a unit test keeps them equal), minus the comments.
GATEWAY_DOCKERFILE = """\
ARG ROOTFS=netns-vault/gateway-rootfs:local
FROM ${ROOTFS}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONPATH=/opt/netns-vault/lib \\
    PYTHONDONTWRITEBYTECODE=1 \\
    LANG=C.UTF-8
LABEL netns-vault.role=gateway-image
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \\
    CMD ["python3", "-m", "netns_vault.docker.gateway", "--health"]
ENTRYPOINT ["python3", "-m", "netns_vault.docker.gateway"]
CMD ["--config", "/config/wg0.conf"]
"""

# Distributions the gateway must not carry (the Docker SDK talks to an engine; the gateway never
# does) and directories of the standard library it never imports.
EXCLUDED_DISTS = frozenset({"docker", "netns-vault"})
STDLIB_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "__phello__",
        "venv",
    }
)
MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
IPTABLES_NAMES = (
    "iptables-legacy",
    "iptables-legacy-save",
    "iptables-legacy-restore",
    "ip6tables-legacy",
    "ip6tables-legacy-save",
    "ip6tables-legacy-restore",
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
)
ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:"
    "/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
}
VAULT_SCRIPT = """#!/usr/bin/python3
import sys
from netns_vault.cli.entry import main
sys.exit(main())
"""


@dataclass
class RootfsPlan:
    """What goes into the rootfs: paths are relative to its root (no leading '/')."""

    files: dict[str, str] = field(default_factory=dict)  # target -> host file
    symlinks: dict[str, str] = field(default_factory=dict)  # target -> link text
    generated: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # target -> data, mode
    dirs: dict[str, int] = field(default_factory=dict)  # target -> mode

    def has(self, target: str) -> bool:
        return target in self.files or target in self.symlinks or target in self.generated

    def add_file(self, host: str, target: str | None = None) -> None:
        target = target or canonical(host)
        if not self.has(target):
            self.files[target] = host

    def add_host_path(self, path: str) -> None:
        """`path` as it is on the host: a file, or a chain of symlinks ending in one."""
        seen = 0
        while True:
            target = canonical(path)
            if os.path.islink(os.path.join("/", target)):
                link = os.readlink(os.path.join("/", target))
                if not self.has(target):
                    self.symlinks[target] = link
                path = os.path.join(os.path.dirname(os.path.join("/", target)), link)
                seen += 1
                if seen > 20:
                    raise SystemFailure(f"symlink loop at {path}")
                continue
            if not os.path.isfile(os.path.join("/", target)):
                raise SystemFailure(f"{path} is not a file")
            self.add_file(os.path.join("/", target), target)
            return

    def add_generated(self, target: str, data: bytes, mode: int = 0o644) -> None:
        self.generated[target] = (data, mode)

    def all_dirs(self) -> dict[str, int]:
        """Every parent directory of every entry (0755), plus the explicit ones."""
        out: dict[str, int] = {}
        for target in [*self.files, *self.symlinks, *self.generated, *self.dirs]:
            parent = os.path.dirname(target)
            while parent and parent not in out and parent not in self.symlinks:
                out[parent] = 0o755
                parent = os.path.dirname(parent)
        out.update(self.dirs)
        return out

    def fingerprint(self) -> str:
        """sha256 over every entry: a changed file (size or mtime) or a new one changes it."""
        h = hashlib.sha256()
        for target in sorted(self.files):
            st = os.stat(self.files[target])
            h.update(f"f {target} {st.st_size} {st.st_mtime_ns} {st.st_mode}\n".encode())
        for target in sorted(self.symlinks):
            h.update(f"l {target} {self.symlinks[target]}\n".encode())
        for target in sorted(self.generated):
            data, mode = self.generated[target]
            h.update(f"g {target} {mode} ".encode() + hashlib.sha256(data).digest() + b"\n")
        for target, mode in sorted(self.dirs.items()):
            h.update(f"d {target} {mode}\n".encode())
        h.update(GATEWAY_DOCKERFILE.encode())
        return h.hexdigest()


def canonical(path: str) -> str:
    """The host path with its directories' symlinks resolved (/lib/x -> usr/lib/x), relative."""
    path = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)).lstrip("/")


# ---------------------------------------------------------------------------------------------
# Collecting the files


def parse_ldd(text: str) -> list[str]:
    """The absolute library paths in `ldd` output (several files' sections allowed)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" (")[0].strip()
        elif line.startswith("/") and " (0x" in line:
            target = line.split(" (")[0]
        else:
            continue
        if target.startswith("/") and target not in out:
            out.append(target)
    return out


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def shared_libraries(binaries: list[str], chunk: int = 200) -> list[str]:
    """Every library the dynamic ELF files in `binaries` load (what `ldd` says)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        raise SystemFailure("ldd not found (apt-get install libc-bin)")
    found: list[str] = []
    elfs = [b for b in binaries if is_elf(b)]
    for i in range(0, len(elfs), chunk):
        res = subprocess.run(
            [ldd, *elfs[i : i + chunk]], capture_output=True, text=True, check=False
        )
        for lib in parse_ldd(res.stdout):
            if lib not in found:
                found.append(lib)
    return found


def _requirement_name(req: str) -> str | None:
    """The distribution a Requires-Dist line names, or None when its marker rules it out here."""
    name_part, _sep, marker = req.partition(";")
    if "extra" in marker or "Windows" in marker or "win32" in marker or "darwin" in marker:
        return None
    name = name_part.strip()
    for stop in "<>=!~[ (":
        name = name.split(stop, 1)[0]
    return name.strip() or None


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def runtime_distributions(root: str = "netns-vault") -> list[metadata.Distribution]:
    """The installed distributions netns-vault needs at run time (its requirements, recursively),
    without EXCLUDED_DISTS."""
    out: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name == root:
                raise SystemFailure("netns-vault is not installed (pip install -e .)") from None
            log.debug("requirement %s is not installed; skipped", name)
            continue
        key = _norm(dist.metadata["Name"])
        if key in out:
            continue
        if key != _norm(root):
            out[key] = dist
        for req in dist.requires or []:
            dep = _requirement_name(req)
            if dep and _norm(dep) not in EXCLUDED_DISTS and _norm(dep) not in out:
                todo.append(dep)
    return [out[k] for k in sorted(out)]


def _dist_files(dist: metadata.Distribution) -> list[tuple[str, str]]:
    """(host path, path relative to site-packages) of each file of `dist`.

    The file list (RECORD, or an egg-info's list, which may name only the sources) plus whatever
    top_level.txt names: python-iptables' egg-info lists its C source, not the built
    libxtwrapper*.so it loads by path.
    """
    base = str(dist.locate_file(""))
    found: dict[str, str] = {}
    for f in dist.files or []:
        path = os.path.normpath(str(dist.locate_file(f)))
        rel = os.path.relpath(path, base)
        if not rel.startswith("..") and os.path.isfile(path):  # not scripts in bin/
            found[path] = rel
    top = (dist.read_text("top_level.txt") or "").split()
    if top and os.path.isdir(base):
        for entry in sorted(os.listdir(base)):
            stem = entry.split(".", 1)[0]
            if stem in top:
                for path, rel in _walk(os.path.join(base, entry), base):
                    found.setdefault(path, rel)
    return sorted(found.items(), key=lambda item: item[1])


def _walk(path: str, base: str, skip_dirs: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    if os.path.isfile(path):
        return [(path, os.path.relpath(path, base))]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):
                out.append((full, os.path.relpath(full, base)))
    return out


ROOTFS_DIRS = (
    ("usr/bin", 0o755), ("usr/sbin", 0o755), ("usr/lib", 0o755), ("usr/lib64", 0o755),
    ("usr/local/bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("run", 0o755), ("var", 0o755),
    ("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("config", 0o755), ("root", 0o700),
)


def plan_rootfs(busybox: str = images.BUSYBOX) -> RootfsPlan:
    """Everything the gateway image's rootfs holds, taken from this host."""
    plan = RootfsPlan()
    for name, target in MERGED_USR.items():
        plan.symlinks[name] = target
    for d, mode in ROOTFS_DIRS:
        plan.dirs[d] = mode
    plan.symlinks["var/run"] = "../run"
    # Every ELF taken from the host: their shared libraries come along (below).
    elfs = _plan_python(plan) + _plan_packages(plan) + _plan_wireguard_go(plan)
    libdir = _xtables_libdir()
    elfs += _plan_iptables(plan, libdir)
    # libgcc_s: glibc loads it at run time (thread cancellation), ldd does not list it
    for lib in shared_libraries(elfs) + _libgcc_s(libdir):
        plan.add_host_path(lib)
    _plan_busybox(plan, busybox)
    for target, text in ETC_FILES.items():
        plan.add_generated(target, text.encode())
    return plan


def _plan_python(plan: RootfsPlan) -> list[str]:
    """The real binary behind the venv, its standard library and extension modules."""
    elfs: list[str] = []
    python = os.path.realpath(sys.executable)
    plan.add_host_path(python)
    elfs.append(python)
    pyname = os.path.basename(python)
    for alias in ("python3", "python"):
        if alias != pyname:
            plan.symlinks[f"usr/bin/{alias}"] = pyname
    stdlib = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})[
        "stdlib"
    ]
    for host, rel in _walk(stdlib, stdlib, STDLIB_SKIP_DIRS):
        if (
            rel.startswith("config-")
            or os.path.islink(host)
            and not os.path.realpath(host).startswith(stdlib)
        ):
            continue  # libpython.a and friends; sitecustomize -> /etc (Debian's apport hook)
        target = os.path.join(canonical(stdlib), rel)
        plan.add_file(os.path.realpath(host), target)
        if host.endswith(".so"):
            elfs.append(host)
    return elfs


def _plan_packages(plan: RootfsPlan) -> list[str]:
    """netns-vault's runtime dependencies and the package itself."""
    elfs: list[str] = []
    for dist in runtime_distributions():
        for host, rel in _dist_files(dist):
            plan.add_file(host, os.path.join(SITE_DIR, rel))
            if ".so" in os.path.basename(host):
                elfs.append(host)
    # This file's package's parent, not netns_vault.__file__ (None under a stale editable install)
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for host, rel in _walk(pkg, os.path.dirname(pkg), frozenset({"__pycache__"})):
        if not rel.endswith((".pyc", ".pyo")):
            plan.add_file(host, os.path.join(SITE_DIR, rel))
    plan.add_generated("usr/local/bin/vault", VAULT_SCRIPT.encode(), 0o755)
    return elfs


def _plan_wireguard_go(plan: RootfsPlan) -> list[str]:
    wg = shutil.which("wireguard-go")
    if wg is None:
        raise SystemFailure("wireguard-go not found (apt-get install wireguard-go)")
    plan.add_host_path(wg)
    return [os.path.realpath(wg)]


def _plan_iptables(plan: RootfsPlan, libdir: str) -> list[str]:
    """iptables-legacy, its libraries (python-iptables loads them by path) and extensions."""
    elfs: list[str] = []
    multi = shutil.which("xtables-legacy-multi") or shutil.which(
        "xtables-legacy-multi", path="/usr/sbin:/sbin"
    )
    if multi is None:
        raise SystemFailure("xtables-legacy-multi not found (apt-get install iptables)")
    plan.add_host_path(multi)
    elfs.append(os.path.realpath(multi))
    sbin = os.path.dirname(canonical(multi))
    for name in IPTABLES_NAMES:
        plan.symlinks.setdefault(os.path.join(sbin, name), "xtables-legacy-multi")
    for entry in sorted(os.listdir(libdir)):
        if entry.startswith(("libxtables.so", "libip4tc.so", "libip6tc.so")):
            plan.add_host_path(os.path.join(libdir, entry))
            elfs.append(os.path.realpath(os.path.join(libdir, entry)))
            # python-iptables asks for libip4tc.so & co. by name; without ldconfig in the image
            # only the unversioned name (a -dev symlink, absent here) in IPTABLES_LIBDIR works.
            stem, _sep, version = entry.partition(".so.")
            if version.isdigit():
                link = os.path.join(
                    os.path.dirname(canonical(os.path.join(libdir, entry))), stem + ".so"
                )
                plan.symlinks.setdefault(link, entry)
    for host, rel in _walk(os.path.join(libdir, "xtables"), "/"):
        plan.add_host_path("/" + rel)
        elfs.append(os.path.realpath(host))
    return elfs


def _plan_busybox(plan: RootfsPlan, busybox: str) -> None:
    """A shell and the usual tools, where nothing real is in the way."""
    bb = _static_busybox(busybox)
    plan.add_file(bb, "usr/bin/busybox")
    for applet in images._applets(bb):
        target = canonical_in_rootfs(applet)
        if not plan.has(target):
            depth = target.count("/")
            plan.symlinks[target] = "../" * depth + "usr/bin/busybox"


def canonical_in_rootfs(path: str) -> str:
    """A path in the rootfs with the merged-/usr links resolved: bin/sh -> usr/bin/sh."""
    path = path.lstrip("/")
    first, _sep, rest = path.partition("/")
    if first in MERGED_USR and rest:
        return f"{MERGED_USR[first]}/{rest}"
    return path


def _xtables_libdir() -> str:
    for libdir in (
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ):
        if os.path.isdir(os.path.join(libdir, "xtables")) and any(
            e.startswith("libxtables.so.") for e in os.listdir(libdir)
        ):
            return libdir
    raise SystemFailure(
        "libxtables and its xtables/ directory not found (apt-get install iptables)"
    )


def _libgcc_s(libdir: str) -> list[str]:
    path = os.path.join(libdir, "libgcc_s.so.1")
    return [path] if os.path.exists(path) else []


def _static_busybox(busybox: str) -> str:
    from .holder_binary import parse_elf

    path = busybox if os.path.isabs(busybox) else (shutil.which(busybox) or busybox)
    try:
        with open(path, "rb") as f:
            info = parse_elf(f.read())
    except (OSError, ValueError) as exc:
        raise SystemFailure(f"{path}: {exc}") from exc
    if not info.is_static:
        raise SystemFailure(f"{path} is dynamically linked; install busybox-static")
    return path


# ---------------------------------------------------------------------------------------------
# Writing and building


def write_rootfs(plan: RootfsPlan, fileobj: Any) -> None:
    """The plan as an uncompressed tar stream (directories first, then files and links)."""
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for target, mode in sorted(plan.all_dirs().items()):
            images._add_dir(tar, target, mode)
        for target in sorted(plan.symlinks):
            images._add_symlink(tar, target, plan.symlinks[target])
        for target in sorted(plan.files):
            host = plan.files[target]
            st = os.stat(host)
            ti = images._info(target, tarfile.REGTYPE, st.st_mode & 0o7777)
            ti.size = st.st_size
            ti.mtime = int(st.st_mtime)
            with open(host, "rb") as f:
                tar.addfile(ti, f)
        for target in sorted(plan.generated):
            data, mode = plan.generated[target]
            images._add_file(tar, target, data, mode)


def gateway_build_context() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        images._add_file(tar, "Dockerfile", GATEWAY_DOCKERFILE.encode(), 0o644)
    return buf.getvalue()


def ensure_gateway_image(client: Any, busybox: str = images.BUSYBOX) -> str:
    """Build `netns-vault/gateway:<version>` unless it exists from the same files. Returns the tag."""
    import docker

    plan = plan_rootfs(busybox)
    fp = plan.fingerprint()
    old = images._image_or_none(client, GATEWAY_TAG)
    if old is not None and (old.labels or {}).get(FINGERPRINT_LABEL) == fp:
        return GATEWAY_TAG
    rootfs_tag = f"{ROOTFS_REPO}:{fp[:16]}"
    if images._image_or_none(client, rootfs_tag) is None:
        with tempfile.TemporaryDirectory(prefix="netns-vault-gw-") as tmp:
            path = os.path.join(tmp, "rootfs.tar")
            with open(path, "wb") as f:
                write_rootfs(plan, f)
            log.debug("docker import %s %s (%d files)", path, rootfs_tag, len(plan.files))
            try:
                client.api.import_image_from_file(
                    path,
                    repository=ROOTFS_REPO,
                    tag=fp[:16],
                    changes=["LABEL netns-vault.role=gateway-rootfs"],
                )
            except docker.errors.APIError as exc:
                raise SystemFailure(f"importing {rootfs_tag}: {exc}") from exc
    log.debug("docker build --build-arg ROOTFS=%s -t %s", rootfs_tag, GATEWAY_TAG)
    try:
        client.images.build(
            fileobj=io.BytesIO(gateway_build_context()),
            custom_context=True,
            tag=GATEWAY_TAG,
            buildargs={"ROOTFS": rootfs_tag},
            pull=False,
            rm=True,
            forcerm=True,
            network_mode="none",
            labels={FINGERPRINT_LABEL: fp},
        )
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise SystemFailure(f"building image {GATEWAY_TAG}: {exc}") from exc
    _remove_previous(client, old, rootfs_tag)
    return GATEWAY_TAG


def _remove_previous(client: Any, old: Any, keep: str) -> None:
    """The replaced gateway image and its rootfs (unless a container still uses them)."""
    import docker

    for image in client.images.list(name=ROOTFS_REPO):
        for tag in image.tags:
            if tag != keep:  # only untags it while the old gateway image is its child
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=False)
    new = images._image_or_none(client, GATEWAY_TAG)
    if old is not None and new is not None and old.id != new.id:
        with contextlib.suppress(docker.errors.APIError):  # 409: a container uses it
            client.images.remove(old.id, noprune=False)  # and its now untagged rootfs
