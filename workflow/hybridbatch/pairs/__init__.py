"""Training pairs from a prepared corpus, with BM25 hard negatives."""
