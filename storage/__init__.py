"""FKS storage package."""
