"""daydream-luigi: a Luigi pipeline for LLM daydreaming experiments."""
