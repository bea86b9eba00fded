"""Model families; each exposes `score(users, candidates) -> (B, N)`."""
