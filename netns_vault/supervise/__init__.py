"""`vault supervise` and boot persistence: a vault that heals itself and comes back at boot.

  notify      sd_notify (READY=1, STOPPING=1, STATUS=) over $NOTIFY_SOCKET, no dependency
  runstate    the supervisor's lock (one per vault) and its state file, read by status/ls
  health      pure logic: backoff, suspend detection, "is the tunnel answering"
  endpoints   re-resolving endpoint names and rotating through fallback endpoints
  holder      Docker: watch the holder container's events, adopt or heal its new namespace
  supervisor  the loop tying them together
  units       systemd units and drop-ins (enable, disable, attach-unit, detach-unit)
"""
