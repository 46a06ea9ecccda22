"""A python-iptables that cannot load libiptc, as on a kernel/distribution without legacy
xtables: put first on PYTHONPATH of a `vault` run, python-iptables' import fails the way it does
there (OSError from ctypes), so `--firewall auto` must pick nftables."""

raise OSError("libip4tc.so.2: cannot open shared object file (simulated: no legacy xtables)")
