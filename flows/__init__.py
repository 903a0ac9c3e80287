"""FKS flows package."""
