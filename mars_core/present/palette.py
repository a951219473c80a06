"""One colour per strategy for every figure of the app (Budget, Compare, ...), so a reader who learnt that
MARS is red on one page finds it red on the next."""

from __future__ import annotations

STRATEGY_COLOURS = {"none": "#7f7f7f", "uniform": "#1f77b4", "won": "#ff7f0e", "mars": "#d62728",
                    "mars-signed": "#9467bd", "mars-std": "#8c564b", "mars-semantic": "#e377c2"}
OTHER_STRATEGY = "#17becf"


def strategy_colour(strategy: str) -> str:
    """The strategy's colour; variants named 'mars-…' that have none of their own share OTHER_STRATEGY."""
    return STRATEGY_COLOURS.get(str(strategy), OTHER_STRATEGY)
