"""FKS envs package."""
