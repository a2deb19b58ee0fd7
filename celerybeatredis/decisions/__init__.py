"""What happens to each claimed entry: the decision, the batch it shares, and fire times replayed from it."""
