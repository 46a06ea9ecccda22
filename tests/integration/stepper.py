"""Run one `vault` command through the real CLI code, with a fault aimed at one step.

    python stepper.py at  ACTION STEP -- up NAME --config C    # after step STEP of up/down/reload
    python stepper.py mid WHERE       -- up NAME --config C    # in the middle of an action

ACTION is fail (raise), sigint or sigkill (the process signals itself). The step hook is the
core API's `on_step` parameter (no environment variable makes the root tool misbehave); `mid`
patches one library call in this process only, so an interrupt lands where no step boundary is:
after the namespace is bound but before `create_netns` returns (namespace), while wireguard-go
starts (wireguard-go), when its log file is open but the process not started (wg-log), between
the /etc/netns directories and their files (dns), and a SIGKILL in the middle of the state
write, after the temp file is written (state-write).
Tests run this under `nsenter --net=` into the world's host, as they run `vault` itself.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time


def hook(action: str, target: str, sigint_grace: float = 0.05):
    """The step hook: after step `target`, fail (raise), or signal this very process. After a
    SIGINT it waits `sigint_grace` s for the handler to run (or to be held back, as in `down`);
    past that, a hook given a long grace says the signal was never delivered."""
    def on_step(step: str) -> None:
        if step != target:
            return
        if action == "fail":
            from netns_vault.errors import SystemFailure

            raise SystemFailure(f"injected failure after step {step!r}")
        if action == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(sigint_grace)
            if sigint_grace >= 1:
                raise SystemExit("SIGINT was not delivered")
        elif action == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            raise SystemExit(f"unknown action {action}")

    return on_step


def _interrupt_after(module, attr: str, exc: type[BaseException] = KeyboardInterrupt) -> None:
    original = getattr(module, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        original(*args, **kwargs)
        raise exc

    setattr(module, attr, wrapper)


def _mid(where: str) -> None:
    if where == "namespace":
        from pyroute2 import netns

        _interrupt_after(netns, "create")
    elif where == "wireguard-go":
        from netns_vault.tunnel import uapi

        def not_yet(self, *args, **kwargs):
            raise KeyboardInterrupt

        uapi.UapiClient.wait_ready = not_yet  # type: ignore[method-assign]
    elif where == "wg-log":
        from netns_vault.tunnel import userspace

        def start(*args, **kwargs):
            raise KeyboardInterrupt

        userspace._start = start  # type: ignore[assignment]
    elif where == "dns":
        from netns_vault import dns

        def interrupted(path: str, text: str) -> None:
            raise KeyboardInterrupt

        dns._write = interrupted
    elif where == "state-write":
        from netns_vault import paths

        real_rename = os.rename

        def killed(src, dst, *args, **kwargs):  # the state's temp file written, not renamed yet
            if str(dst).startswith(paths.STATE_DIR + "/") and str(dst).endswith(".json"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_rename(src, dst, *args, **kwargs)

        os.rename = killed
    else:
        raise SystemExit(f"unknown place {where}")


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    mode, rest, args = argv[0], argv[1:sep], argv[sep + 1:]
    from netns_vault import vault
    from netns_vault.cli import entry

    if mode == "at":
        action, step = rest
        on_step = hook(action, step)
        for fn in ("up", "down", "reload_tunnel"):
            setattr(vault, fn, functools.partial(getattr(vault, fn), on_step=on_step))
    elif mode == "mid":
        _mid(rest[0])
    else:
        raise SystemExit(f"unknown mode {mode}")
    entry.install_sigint_handler()
    return entry.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
