"""Attach a Voice Live connection the agent holds itself to the service (see ``client``).

Importable without the server: it needs only the ``azure-ai-voicelive`` SDK and aiohttp.
"""

from service.connector.client import Attached, AttachError, attach

__all__ = ["AttachError", "Attached", "attach"]
