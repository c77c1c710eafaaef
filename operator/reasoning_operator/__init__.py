"""The kopf operator that turns a ReasoningRun into Kubernetes workloads, one recipe stage at a time."""

__version__ = "0.1.0"
