"""Search-space and experiment configs (one YAML per experiment), shipped as package data."""
