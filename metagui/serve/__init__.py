"""``metagui serve``: a trained intent (or image) model as an HTTP JSON API (FastAPI + uvicorn).

Qt-free and outside the core (the core never imports it): ``deployment`` opens a stored run
as a Try-it ``ChatSession`` whose every change is journalled in the run store, ``app`` builds
the FastAPI application around one deployment, ``server`` binds and runs it.

FastAPI and uvicorn are an optional extra: ``pip install "metagui[serve]"``.
"""

from metagui.serve.deployment import Deployment, bundle_run, loopback

__all__ = ["Deployment", "bundle_run", "loopback"]
