"""Chapter 3: coding attention mechanisms (book classes + a fused SDPA fast path)."""
