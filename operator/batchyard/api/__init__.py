"""Pydantic models: the single source of truth for every Batchyard CRD and its validation."""
