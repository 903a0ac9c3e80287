"""FKS models package."""
