"""Audio: reading files (io), mel features (features, imports torch), demo sounds (demo)."""
