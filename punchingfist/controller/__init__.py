"""The Kopf controller: Workflows compiled into WorkflowTemplates, status, admission."""

from punchingfist.controller.operator import (
    AdmissionOptions,
    Catalog,
    Controller,
    ControllerOptions,
    OperatorThread,
    build_registry,
    connect,
    run_operator,
)

__all__ = [
    "AdmissionOptions",
    "Catalog",
    "Controller",
    "ControllerOptions",
    "OperatorThread",
    "build_registry",
    "connect",
    "run_operator",
]
