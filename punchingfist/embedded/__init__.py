"""Embedded mode (D11): run workflows on this machine with the local engine, no cluster needed."""

from punchingfist.runs.report import investigation, render
from punchingfist.executors.setup import (
    ModelChoice,
    choose_model,
    event_parameters,
    gather_secrets,
    matching_scenarios,
)

__all__ = [
    "ModelChoice",
    "choose_model",
    "event_parameters",
    "gather_secrets",
    "investigation",
    "matching_scenarios",
    "render",
]
