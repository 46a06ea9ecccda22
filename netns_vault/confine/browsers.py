"""Browsers are vault-aware: their own profile per vault, and no remoting to outside instances.

A browser already running on the host absorbs a new launch of the same browser: the new process
hands its URL over (X11 properties, D-Bus or a unix socket in the profile) and exits, and the
page loads outside the tunnel. So for a browser launched by name or path, `vault run` gives it
a profile directory of its own per vault (`$XDG_DATA_HOME/netns-vault/profiles/VAULT/BROWSER`,
default `~/.local/share/...`, mode 0700, made by the user) unless one was passed, and:

- Gecko (Firefox, Firefox ESR, LibreWolf...): `--profile DIR --no-remote`, MOZ_NO_REMOTE=1. A
  remote client only looks for a server running the *same* profile, and no outside instance runs
  the vault's profile. With remoting off, a second launch into the same vault while the first
  runs meets Firefox's own "already running" message instead of opening a window there (open
  new windows from the running one); it never reaches a browser outside.
- Chromium family (Chromium, Chrome, Brave, Edge, Vivaldi): `--user-data-dir=DIR`. Chromium's
  single-instance hand-off goes through a socket inside the user data dir, so a second launch
  into the same vault opens in the vault's instance, and never in one outside.
"""

from __future__ import annotations

import os

GECKO = frozenset({"firefox", "firefox-esr", "firefox-bin", "librewolf", "waterfox",
                   "iceweasel", "firefox-developer-edition", "firefox-nightly"})
CHROMIUM = frozenset({"chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                      "google-chrome-beta", "google-chrome-unstable", "chrome", "brave",
                      "brave-browser", "brave-browser-stable", "microsoft-edge",
                      "microsoft-edge-stable", "vivaldi", "vivaldi-stable", "opera"})
GECKO_PROFILE_FLAGS = ("-profile", "--profile", "-P", "--P", "-ProfileManager",
                       "--ProfileManager")


def kind(argv0: str, resolved: str | None) -> tuple[str, str] | None:
    """("gecko"|"chromium", browser name) for a browser launched by name or path."""
    names = [os.path.basename(argv0)]
    if resolved:
        names += [os.path.basename(resolved), os.path.basename(os.path.realpath(resolved))]
    for name in names:
        if name in GECKO:
            return "gecko", name
        if name in CHROMIUM:
            return "chromium", name
    return None


def profile_dir(env: dict[str, str], home: str, vault: str, browser: str) -> str:
    data = env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(data, "netns-vault", "profiles", vault, browser)


def adapt(argv: list[str], env: dict[str, str], kind_name: str, profile: str) -> tuple[
        list[str], str | None]:
    """The browser's argv and env for a vault; returns (argv, profile dir to create or None)."""
    args = argv[1:]
    if kind_name == "gecko":
        env["MOZ_NO_REMOTE"] = "1"
        env.pop("MOZ_DBUS_REMOTE", None)
        extra = [] if "--no-remote" in args or "-no-remote" in args else ["--no-remote"]
        if any(a in GECKO_PROFILE_FLAGS or a.startswith("--profile=") for a in args):
            return [argv[0], *extra, *args], None
        return [argv[0], *extra, "--profile", profile, *args], profile
    if any(a.startswith("--user-data-dir") for a in args):
        return argv, None
    return [argv[0], f"--user-data-dir={profile}", *args], profile


def make_profile(path: str) -> None:
    """As the target user (after the privilege drop): owner is right by construction."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
