"""FKS expectations package."""
