"""The web UI (server-rendered pages in the API app)."""
