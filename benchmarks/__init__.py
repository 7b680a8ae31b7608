"""The benchmarks of the client (``benchmarks.client``) and of the hub (``benchmarks.hub``).

Run from the repository's root: ``python -m benchmarks.run [--quick] [--only ...]`` (see README.md).
Nothing is imported here: a peer client's virtual environment imports ``benchmarks.client`` too.
"""
