"""The `vault` command line: thin commands over the core library."""
