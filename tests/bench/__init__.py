"""`make bench`: measured costs of the agent and of the tools it is compared with.

Run ``python -m tests.bench.run [NAME ...]``; results go to docs/benchmarks.md.
"""
