"""FKS backtest package."""
