"""The only code that talks to Kubernetes: the client, the cluster state and `apply`."""
