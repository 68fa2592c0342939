"""Pure builders: (job, job definition revision, compute environment, attempt) -> Pod manifest."""
