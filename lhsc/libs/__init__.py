"""LHSC's two encoder blocks, kept in upstream's `libs/` package: IM_GCN (regions) and TextAttn (words)."""
