"""Chapter 6: fine-tuning for classification (the book's spam classifier on the SMS Spam Collection)."""
