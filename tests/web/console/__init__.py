"""Console, sessions, CORS and the built-in viewer, tested in Chromium."""
