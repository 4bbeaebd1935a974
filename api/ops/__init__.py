"""Operations: health and readiness probes, the styles list, /metrics (on the public port or a port
of its own) and the per-request metrics middleware."""
