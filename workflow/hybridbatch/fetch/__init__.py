"""Getting raw data: URL and git downloads with checksums, safe archive extraction, Hugging Face datasets."""
