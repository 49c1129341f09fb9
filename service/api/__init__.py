"""FastAPI routers, one module per resource; deps.py holds the shared dependencies."""
