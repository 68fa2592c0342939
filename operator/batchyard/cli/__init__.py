"""The `batchyard` command."""
