"""The vault's firewall: a pure ruleset (rules.py) and a backend that applies it (iptables.py)."""
