"""`python -m batchyard.devcluster build [--kueue]`: build (or reuse) the control-plane binaries
(and, with --kueue only, Kueue's manager for the throughput benchmark)."""

from batchyard.devcluster.build import main

main()
