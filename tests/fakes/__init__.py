"""Fakes of SaaS endpoints that speak the real wire protocol over real sockets."""
