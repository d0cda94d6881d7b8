"""Chapter 5: pretraining on unlabeled data (training loop, sampling, checkpoints, GPT-2 weights, CLIs)."""
