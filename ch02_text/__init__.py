"""Chapter 2: working with text data (tokenizers, BPE, sliding-window data loader)."""
