"""Confinement of the program `vault run` starts: capabilities, seccomp, D-Bus, browsers, hides.

Each module is imported only by `vault run`'s hot path and keeps to the standard library (the
seccomp compiler imports pyseccomp only on a cache miss).
"""
