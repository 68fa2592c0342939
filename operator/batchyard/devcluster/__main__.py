"""`python -m batchyard.devcluster build`: build (or reuse) the control-plane binaries."""

from batchyard.devcluster.build import main

main()
