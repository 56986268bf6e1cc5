"""The two on-disk contracts: the run directory (``rundir``) and the bundle (``bundle``).

Each has one module that knows its file names, reads and writes it; every stage goes through it.
"""
