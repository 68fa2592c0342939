"""The only code that talks to Kubernetes: the loop observes the cluster state, asks ``core``
and executes (``controller`` decides, ``apply`` acts; layers in docs/architecture.md)."""
