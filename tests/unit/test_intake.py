"""Intake pieces that need no database: a run's parameters as COPY sends them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from punchingfist.api import Source, load_resources
from punchingfist.api.alerts import AlertmanagerPayload, event_from_payload
from punchingfist.server.intake import _Notification

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCE = """apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: "alerts"}
spec:
  type: webhook
  config: {path: /webhook/alerts}
  triggerWorkflow: investigate
  context: {team: "pay\\tments \\"core\\" \\\\ ünïcode", links: [1, 2]}
"""


def source() -> Source:
    (found,) = load_resources(SOURCE)
    assert isinstance(found, Source)
    return found


@pytest.mark.parametrize("name", ["grouped-two-alerts.json", "hostile-labels.json"])
def test_the_pre_encoded_parameters_are_the_event_json(name: str) -> None:
    """The group part of a payload's events is encoded once and spliced into each run's JSON:
    the text must decode to exactly the parameters the other stores get."""
    payload = AlertmanagerPayload.model_validate_json((EXAMPLES / "alerts" / name).read_text())
    notification = _Notification(payload)
    origin = source()
    for index, alert in enumerate(payload.alerts):
        encoded = notification.parameters(index, origin)
        expected = {
            "event": event_from_payload(payload, index, dict(origin.spec.context)),
            "source": "alerts",
            "fingerprint": alert.fingerprint,
        }
        assert encoded.value == expected
        assert json.loads(encoded.text) == expected


def test_text_ids_are_distinct_version_4_uuids() -> None:
    import uuid

    from punchingfist.store.bulk import Ids

    new_id = Ids(block=8, text=True)
    made = [new_id() for _ in range(50)]  # crosses several blocks
    assert len(set(made)) == 50
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
