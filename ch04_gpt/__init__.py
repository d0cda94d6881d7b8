"""Chapter 4: implementing a GPT model from scratch (plus KV-cache generation)."""
