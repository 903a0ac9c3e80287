"""FKS serving package."""
