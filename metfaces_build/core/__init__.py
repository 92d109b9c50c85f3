"""Pure core: records, geometry, the exact blur, metrics. No I/O, imports nothing above it."""
