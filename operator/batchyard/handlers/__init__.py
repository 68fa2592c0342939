"""The only code that imports kopf: thin handlers that parse, store and wake the scheduler."""
