"""Batchyard: AWS Batch semantics on Kubernetes, as a kopf operator."""

GROUP = "batchyard.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

__version__ = "0.1.0"
