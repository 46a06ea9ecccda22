"""Docker support: a holder container owns each Docker vault's network namespace.

Nothing here imports the `docker` SDK at module level (the CLI's `vault run` path must stay
light); the SDK is imported inside the functions that talk to the engine.
"""
