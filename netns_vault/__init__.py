"""netns-vault: programs in a network namespace whose only uplink is WireGuard.

Keep this file free of imports: `vault run` must start fast.
"""

__version__ = "0.1.0"
