"""Pure, synchronous, deterministic decisions. No I/O; time comes in as an argument.

Every AWS Batch rule the operator implements lives in a module here (or in ``render`` for the
pod itself); the table "AWS rule -> module / function" is in docs/architecture.md.
"""
