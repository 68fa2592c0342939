"""Pure, synchronous, deterministic decisions. No I/O; time comes in as an argument."""
