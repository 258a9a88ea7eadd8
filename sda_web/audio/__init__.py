"""Audio: reading files (io), band features (features, imports torch), the waveform inverse (inverse), demo sounds (demo)."""
