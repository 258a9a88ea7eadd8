"""Making sounds from a trained model. Imports torch: not on the server's start-up path."""
