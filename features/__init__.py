"""FKS features package."""
