"""What the system remembers of past incidents, and how it finds the ones like a new alert."""
