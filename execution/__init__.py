"""FKS execution package."""
