"""regjax benchmarks: one entry point (``python benchmarks/run.py``), one module per suite.

Suite modules expose ``run(ctx) -> dict`` (see ``benchmarks.common.Context`` and ``suite_result``).
"""
