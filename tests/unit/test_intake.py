"""Intake pieces that need no database: a run's parameters and its notification's."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from punchingfist.api import Source, load_resources
from punchingfist.api.alerts import AlertmanagerPayload, event_from_payload
from punchingfist.runs.intake import _Notification
from punchingfist.store import Notification, WorkflowRun

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
def test_a_run_and_its_notification_give_back_the_whole_event(name: str) -> None:
    """A payload's group part is stored once, in its notification; each run keeps its alert and
    its Source's context. Together they are exactly the event a run is about."""
    payload = AlertmanagerPayload.model_validate_json((EXAMPLES / "alerts" / name).read_text())
    notification = _Notification(payload)
    stored = Notification(**notification.record(uuid.uuid4(), datetime.now(UTC)))
    origin = source()
    assert "alert" not in stored.event and "context" not in stored.event
    for index, alert in enumerate(payload.alerts):
        own = notification.parameters(index, origin)
        assert set(own["event"]) == {"alert", "context"}
        run = WorkflowRun(parameters=json.loads(json.dumps(own)), notification=stored)
        expected = {
            "event": event_from_payload(payload, index, dict(origin.spec.context)),
            "source": "alerts",
            "fingerprint": alert.fingerprint,
        }
        assert run.arguments == expected
        assert list(run.arguments["event"]) == list(expected["event"])  # the same key order


def test_a_run_without_a_notification_keeps_its_own_parameters() -> None:
    parameters = {"event": {"chat": {"text": "debug"}}, "source": "chat"}
    assert WorkflowRun(parameters=parameters).arguments == parameters


def test_text_ids_are_distinct_version_4_uuids() -> None:
    from punchingfist.store.batches import Ids

    new_id = Ids(block=8, text=True)
    made = [new_id() for _ in range(50)]  # crosses several blocks
    assert len(set(made)) == 50
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_a_forked_process_never_draws_its_parents_ids() -> None:
    """Server workers are forked: ids drawn before the fork must not be handed out twice."""
    import os

    from punchingfist.store.batches import Ids

    new_id = Ids(text=True)
    new_id()  # the parent now holds a block of drawn ids
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(writer, new_id().encode())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 100).decode()
    os.waitpid(pid, 0)
    assert child and child != new_id()


def test_a_prepared_statement_takes_the_drivers_placeholders_in_order() -> None:
    from punchingfist.store._bulk import _preparable

    digest, body, keys = _preparable(
        "UPDATE t SET a = %(x)s, b = %(y)s WHERE c = %(x)s AND d LIKE 'p%%s'"
    )
    assert body == "UPDATE t SET a = $1, b = $2 WHERE c = $1 AND d LIKE 'p%s'"
    assert keys == ("x", "y")
    assert _preparable("INSERT INTO t SELECT %s::json, %s::json")[1:] == (
        "INSERT INTO t SELECT $1::json, $2::json",
        (),
    )
    assert digest != _preparable("UPDATE t SET a = %(x)s")[0]  # a name per text
