"""Punching Fist: declarative, auditable AI-assisted incident response on Argo Workflows."""

__version__ = "0.1.0"
