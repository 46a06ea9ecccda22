"""DNS inside a vault: /etc/netns/vault-NAME/{resolv.conf,nsswitch.conf}.

`vault run` (and `ip netns exec`) bind-mount these over /etc, so a program in the vault asks only
the config's DNS= servers, which it can reach only through the tunnel. nsswitch is rewritten to
`hosts: files dns`, because nss-resolve, nss-mdns and nscd answer over unix sockets to daemons on
the host's network: a DNS leak no firewall sees.
"""

from __future__ import annotations

import contextlib
import os

from . import paths

HOST_NSSWITCH = "/etc/nsswitch.conf"
# Present while /etc/netns exists because a vault made it: the last vault down removes it then,
# whichever vault that is.
MADE_MARKER_NAME = "etc-netns.made"  # in paths.STATE_DIR


def made_marker() -> str:
    return os.path.join(paths.STATE_DIR, MADE_MARKER_NAME)

# Sources that resolve names through a daemon outside the vault.
_LEAKY_HOST_SOURCES = {"resolve", "mdns", "mdns4", "mdns6", "mdns_minimal", "mdns4_minimal",
                       "mdns6_minimal", "myhostname", "mymachines", "wins", "libvirt",
                       "libvirt_guest"}

NO_DNS_WARNING = ("the config has no DNS= server: name resolution inside the vault fails closed "
                  "(programs can still use IP addresses)")


def resolv_conf_text(servers: list[str], search: list[str]) -> str:
    lines = ["# Written by netns-vault: DNS only through the tunnel."]
    if not servers:
        # glibc falls back to 127.0.0.1 when no nameserver is listed; nothing listens on the
        # vault's lo, so lookups fail closed instead of escaping.
        lines.append("# No DNS= in the config: this vault has no resolver.")
    lines += [f"nameserver {s}" for s in servers[:3]]
    if search:
        lines.append("search " + " ".join(search))
    lines.append("options edns0")
    return "\n".join(lines) + "\n"


def nsswitch_conf_text(host_text: str | None) -> str:
    """The host's nsswitch.conf with `hosts:` forced to `files dns` (and nothing else leaky)."""
    out = ["# Written by netns-vault: hosts resolve through files and the vault's DNS only."]
    saw_hosts = False
    for line in (host_text or "").splitlines():
        key = line.split(":", 1)[0].strip()
        if key == "hosts":
            out.append("hosts: files dns")
            saw_hosts = True
        elif key in ("networks",):
            out.append("networks: files")
        else:
            words = line.split()
            if words and key and not line.lstrip().startswith("#"):
                kept = [w for w in words[1:] if w.split("[")[0] not in _LEAKY_HOST_SOURCES]
                line = f"{words[0]} {' '.join(kept) or 'files'}"
            out.append(line)
    if not saw_hosts:
        out.append("hosts: files dns")
    return "\n".join(out) + "\n"


def write_dns_files(etc_dir: str, servers: list[str], search: list[str],
                    marker: str | None = None) -> bool:
    """Create etc_dir with resolv.conf and nsswitch.conf. Fails if etc_dir already exists.

    Returns whether the parent (/etc/netns) had to be created; then `marker` records it.
    """
    marker = marker or made_marker()
    parent = os.path.dirname(etc_dir)
    made_parent = not os.path.isdir(parent)
    if made_parent:  # the marker first: an interrupt between the two leaves nothing unowned
        os.makedirs(os.path.dirname(marker), mode=0o700, exist_ok=True)
        with open(marker, "w"):
            pass
    os.makedirs(parent, exist_ok=True)
    os.mkdir(etc_dir, 0o755)
    try:
        host_nsswitch = None
        with contextlib.suppress(OSError), open(HOST_NSSWITCH) as f:
            host_nsswitch = f.read()
        _write(os.path.join(etc_dir, "resolv.conf"), resolv_conf_text(servers, search))
        _write(os.path.join(etc_dir, "nsswitch.conf"), nsswitch_conf_text(host_nsswitch))
    except BaseException:
        remove_dns_files(etc_dir, marker)
        raise
    return made_parent


def remove_dns_files(etc_dir: str, marker: str | None = None) -> None:
    marker = marker or made_marker()
    _remove_tree(etc_dir)
    if os.path.exists(marker):  # a vault made /etc/netns: remove it once nothing lives there
        try:
            os.rmdir(os.path.dirname(etc_dir))
        except FileNotFoundError:
            pass  # never made (an interrupted write), or already gone: the marker goes too
        except OSError:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def read_nameservers(etc_dir: str) -> list[str] | None:
    try:
        with open(os.path.join(etc_dir, "resolv.conf")) as f:
            text = f.read()
    except OSError:
        return None
    return [line.split()[1] for line in text.splitlines()
            if line.startswith("nameserver") and len(line.split()) > 1]


def _remove_tree(path: str) -> None:
    """`rm -rf path`, ignoring errors. What a vault puts there is plain files: os calls remove
    them; shutil.rmtree (3 ms to import, on every `vault down`) only when there is more."""
    if os.path.islink(path):
        return  # never through a symlink (shutil.rmtree refuses one too)
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    if any(e.is_dir(follow_symlinks=False) for e in entries):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    with contextlib.suppress(OSError):
        os.rmdir(path)
