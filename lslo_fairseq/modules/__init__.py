"""LSLo layers."""
