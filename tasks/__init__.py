"""FKS tasks package."""
