"""Asynchronous generation jobs: persistence (store) for the REST service."""
