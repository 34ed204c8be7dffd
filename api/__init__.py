"""The REST API for interview-practice platforms (FastAPI): ``api.main.create_app``, run by ``grader serve``."""
