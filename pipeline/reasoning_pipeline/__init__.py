"""The programs the recipe's stage containers run; no Kubernetes dependency."""

__version__ = "0.1.0"
