"""The MLflow-compatible door (docs/architecture.md, "The MLflow door")."""
