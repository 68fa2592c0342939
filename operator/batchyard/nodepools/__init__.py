"""Node-pool providers behind one small interface (kwok, Karpenter, Cluster API, unmanaged)."""
