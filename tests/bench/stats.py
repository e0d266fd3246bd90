"""Small statistics for alternated benchmark rounds."""

from __future__ import annotations

import statistics


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def abba(rounds: int, a: str, b: str) -> list[str]:
    """Alternated order a b b a a b b a ...: drift over time falls on both sides."""
    out: list[str] = []
    for r in range(rounds):
        out += [a, b] if r % 2 == 0 else [b, a]
    return out
