"""What beat does with the run policies an entry may have: catch-up, jitter, overlap, excluded days."""
