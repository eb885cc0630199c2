"""What runs inside a step container: `pf-runtime`."""
