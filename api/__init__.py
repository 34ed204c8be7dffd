"""The REST API for interview-practice platforms (FastAPI). Not built yet: see the REST API issue."""
