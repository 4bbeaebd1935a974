"""The integration tests' real parts (Redis, Celery worker processes, the gateway on a socket) are
defined in ``tests/conftest.py``, shared with the end-to-end tests."""
