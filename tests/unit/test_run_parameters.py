"""A run's parameters, one type from the queue to the compiled template's arguments and back:
what the store keeps, what Argo and the local engine are given, what tracking reads again."""

from __future__ import annotations

import json

from punchingfist.api.runspec import RunParameters
from punchingfist.compiler.naming import PARAMETERS

EVENT = {"alert": {"alertname": "PodCrashLooping", "labels": {"pod": "wéb-1"}}}


def test_arguments_are_text_and_read_back_to_the_same_parameters() -> None:
    given = RunParameters(EVENT, "alertmanager", "a1b2")
    arguments = given.arguments()
    assert tuple(arguments) == PARAMETERS  # the compiled template's parameters, in its order
    assert all(isinstance(value, str) for value in arguments.values())
    assert json.loads(arguments["event"]) == EVENT
    assert RunParameters.of(arguments) == given == RunParameters.of(given.stored())
    assert given.stored() == {"event": EVENT, "source": "alertmanager", "fingerprint": "a1b2"}


def test_what_is_not_an_event_object_reads_as_an_empty_event() -> None:
    for event in ("not json", "[1, 2]", None, 7, '"text"'):
        assert RunParameters.of({"event": event, "source": "s"}) == RunParameters({}, "s", "")
    assert RunParameters.of({}) == RunParameters()
