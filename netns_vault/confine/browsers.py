"""Browsers are vault-aware: their own profile per vault, and no remoting to outside instances.

A browser already running on the host absorbs a new launch of the same browser: the new process
hands its URL over (X11 properties, D-Bus or a unix socket in the profile) and exits, and the
page loads outside the tunnel. So for a browser launched by name or path, `vault run` gives it
a profile directory of its own per vault (`$XDG_DATA_HOME/netns-vault/profiles/VAULT/BROWSER`,
default `~/.local/share/...`, mode 0700, made by the user) unless one was passed, and:

- Gecko (Firefox, Firefox ESR, LibreWolf...): `--profile DIR`. Firefox's only remoting on Linux
  (X11-property remoting is gone from current ESRs) is D-Bus: a running instance owns
  `org.mozilla.APP.B64`, B64 being the base64 of its profile path ("+/=" -> "_"), and a new
  launch hands its URL to the owner of the name for *its* profile. So with the filtered bus
  (the default) remoting stays on, and the program's proxy may own and call exactly the names
  of the vault's profile (`remote_names`): a second launch into the same vault opens in the
  vault's instance, and no other org.mozilla.* name (the host's Firefox, another vault's) is
  visible. With `--dbus host|none`, or a profile the user passed (a host instance may run that
  very profile), remoting is off instead: `--no-remote` and MOZ_NO_REMOTE=1, and a second
  launch meets Firefox's "already running" message; it never reaches a browser outside.
- Chromium family (Chromium, Chrome, Brave, Edge, Vivaldi): `--user-data-dir=DIR`. Chromium's
  single-instance hand-off goes through a socket inside the user data dir, so a second launch
  into the same vault opens in the vault's instance, and never in one outside.
"""

from __future__ import annotations

import base64
import configparser
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


def adapt(argv: list[str], env: dict[str, str], kind_name: str, profile: str,
          remote: bool = False) -> tuple[list[str], str | None]:
    """The browser's argv and env for a vault; returns (argv, profile dir to create or None).

    `remote`: keep Gecko's remoting on when the vault's own profile is used (the caller then
    lets the bus proxy own `remote_names` and nothing else).
    """
    args = argv[1:]
    if kind_name == "gecko":
        env.pop("MOZ_DBUS_REMOTE", None)
        if remote and not gecko_profile_given(args) and not _no_remote(args):
            env.pop("MOZ_NO_REMOTE", None)
            return [argv[0], "--profile", profile, *args], profile
        env["MOZ_NO_REMOTE"] = "1"
        extra = [] if _no_remote(args) else ["--no-remote"]
        if gecko_profile_given(args):
            return [argv[0], *extra, *args], None
        return [argv[0], *extra, "--profile", profile, *args], profile
    if any(a.startswith("--user-data-dir") for a in args):
        return argv, None
    return [argv[0], f"--user-data-dir={profile}", *args], profile


def gecko_profile_given(args: list[str]) -> bool:
    return any(a in GECKO_PROFILE_FLAGS or a.startswith("--profile=") for a in args)


def _no_remote(args: list[str]) -> bool:
    return any(a in ("--no-remote", "-no-remote", "--new-instance", "-new-instance")
               for a in args)


DBUS_NAME_MAX = 255


def remote_names(profile: str, apps: list[str]) -> list[str]:
    """The D-Bus names a Gecko browser running `profile` owns for remoting, one per app name.

    As Firefox makes them (nsDBusRemoteServer/Client): base64 of the canonical profile path,
    "+", "/" and "=" turned into "_", truncated to D-Bus's 255 characters.
    """
    path = os.path.realpath(profile)
    tail = base64.b64encode(path.encode()).decode().translate(str.maketrans("+/=", "___"))
    return [f"org.mozilla.{app}.{tail}"[:DBUS_NAME_MAX] for app in apps]


def gecko_app_names(env: dict[str, str], resolved: str | None, browser: str) -> list[str]:
    """The application names Firefox may use in its bus name (its GetDBusAppName).

    SNAP_NAME, else MOZ_DBUS_APP_NAME, else application.ini's Name, lower-cased. All
    candidates are allowed: every name ends in the vault's own profile, so none is another
    instance's.
    """
    apps = [env.get("SNAP_NAME", ""), env.get("MOZ_DBUS_APP_NAME", "")]
    if resolved:
        ini = os.path.join(os.path.dirname(os.path.realpath(resolved)), "application.ini")
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(ini)
            apps.append(parser.get("App", "Name", fallback=""))
        except (OSError, configparser.Error):
            pass
    apps += [browser, "firefox"]
    out: list[str] = []
    for app in apps:
        app = app.lower()
        plain = app.replace("-", "a").replace("_", "a")
        if plain.isascii() and plain.isalnum() and not app[0].isdigit() and app not in out:
            out.append(app)
    return out


def make_profile(path: str) -> None:
    """As the target user (after the privilege drop): owner is right by construction."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
