"""Numbers on the asset pages. The Dagster UI prints a float metadata value with every digit
of its repr (`final_loss 1.1909451484680176`), so the assets round the floats they show to
4 significant digits; what the lake stores is never rounded."""

SIGNIFICANT = 4


def significant(x: float, digits: int = SIGNIFICANT) -> float:
    """`x` to `digits` significant digits (NaN and inf as they are)."""
    return float(f"{x:.{digits}g}")


def rounded(metadata: dict[str, object]) -> dict[str, object]:
    """`metadata` with each float value to 4 significant digits, the rest as it is."""
    return {k: significant(v) if isinstance(v, float) else v for k, v in metadata.items()}
