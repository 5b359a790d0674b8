"""`decodelab serve`: the local engine as an OpenAI-compatible HTTP server (Starlette + uvicorn).

A layer over engine/, like cli/ and tui/: engine never imports it. Requests from many clients,
with different prompts, decode in one shared batch (engine/decoding/loop.py).
"""

from .app import Limits
from .runner import Server, exposure_warning

__all__ = ["Limits", "Server", "exposure_warning"]
