"""tcgen service side: CLI now; engine and REST API in later issues."""
