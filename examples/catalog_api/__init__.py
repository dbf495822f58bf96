"""The catalog behind HTTP endpoints (FastAPI), with a search context indexing it."""
