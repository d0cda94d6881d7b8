"""Chapter 7: fine-tuning to follow instructions (GPT-2 medium on the book's 1,100 instruction-response pairs)."""
