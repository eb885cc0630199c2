"""A field written one level too deep is named with the path where it belongs (#24)."""

from __future__ import annotations

from typing import Any

import pytest

from punchingfist.api import parse_resource
from punchingfist.errors import InvalidResource


def problems(steps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    body = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf"},
        "spec": {"steps": steps},
    }
    with pytest.raises(InvalidResource) as caught:
        parse_resource(body)
    return caught.value.problems


TOOL = {"name": "curl", "timeoutMinutes": 5}
ACTION = {"goal": "g", "serviceAccount": "reader"}


@pytest.mark.parametrize(
    ("step", "where", "field", "home"),
    [
        (
            {"name": "a", "type": "agent", "goal": "g", "tools": [TOOL]},
            "spec.steps[0].tools[0]",
            "timeoutMinutes",
            "spec.steps[0].timeoutMinutes",
        ),
        (
            {"name": "c", "type": "conditional", "condition": "true", "agent": ACTION},
            "spec.steps[0].agent",
            "serviceAccount",
            "spec.steps[0].serviceAccount",
        ),
    ],
)
def test_a_step_field_in_a_nested_block_is_sent_to_the_step(
    step: dict[str, Any], where: str, field: str, home: str
) -> None:
    assert problems([step]) == [
        (f"{where}.{field}", f"unknown field {field!r} in {where}; it belongs at {home}")
    ]


def test_a_field_the_enclosing_block_sets_already_never_suggests_itself() -> None:
    action = {"goal": "g", "name": "inner"}
    steps = [{"name": "c", "type": "conditional", "condition": "true", "agent": action}]
    ((path, message),) = problems(steps)
    assert path == "spec.steps[0].agent.name"
    assert message == (
        "unknown field 'name' in spec.steps[0].agent; it belongs at spec.steps[0].name, "
        "which is set already"
    )


def test_a_known_field_no_enclosing_block_takes_is_not_suggested_as_itself() -> None:
    steps = [{"name": "a", "type": "agent", "goal": "g", "action": "restart"}]
    ((path, message),) = problems(steps)
    assert path == "spec.steps[0].action"
    assert message.startswith("unknown field 'action'")
    assert "did you mean 'action'" not in message
