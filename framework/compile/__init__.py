"""Recipe → Plan: ordered, fingerprinted steps; pure (no I/O, no engine imports)."""
