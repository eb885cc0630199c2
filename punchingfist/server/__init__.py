"""The HTTP front door: Alertmanager webhooks, the read API, metrics and health."""

from punchingfist.server.app import add_source_routes, create_app
from punchingfist.server.state import ServerState

__all__ = ["ServerState", "add_source_routes", "create_app"]
