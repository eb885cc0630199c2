"""A run report's feedback in Slack (#22), on SQLite and PostgreSQL: signed clicks on "✅ right" /
"❌ wrong" judge the run's findings, "Resolved by…" opens the modal (the fake Slack gets
`views.open`) whose submission resolves the incident; forged clicks and users who may not answer
approval gates change nothing. The real app; runs answer and finish as in test_memory_remember."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from punchingfist.runtime.sinks.slack import RESOLVE_ACTION, RIGHT_ACTION, WRONG_ACTION
from punchingfist.server import ServerState
from punchingfist.server.feedback import NOTE, ROOT_CAUSE
from tests.fakes.saas import Answer, FakeSlack, Request
from tests.integration.test_approvals_api import SIGNING_SECRET, slack_request
from tests.integration.test_memory_remember import (
    entries,
    incident_of,
    investigated,
    new_run,
    served,  # noqa: F401 (the fixture `app` uses)
)

BOT_TOKEN = "xoxb-feedback-test"
APPROVER, STRANGER = "U0APPROVER", "U0STRANGER"


class ModalSlack(FakeSlack):
    """The fake Slack, which also opens modals (`views.open`: form fields, the view as JSON)."""

    def __init__(self) -> None:
        super().__init__(BOT_TOKEN, {"C0OPSALERTS": "ops-alerts"})
        self.views: list[dict[str, Any]] = []

    def handle(self, request: Request) -> Answer:
        if request.path != "/api/views.open":
            return super().handle(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}
        arguments = request.arguments()
        if not arguments.get("trigger_id"):
            return 200, {"ok": False, "error": "invalid_trigger_id"}
        self.views.append(arguments | {"view": json.loads(arguments["view"])})
        return 200, {"ok": True, "view": {"id": "V0MODAL1"}}


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModalSlack]:
    with ModalSlack() as fake:
        assert isinstance(fake, ModalSlack)
        monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
        monkeypatch.setenv("SLACK_API_URL", fake.url + "/api/")
        yield fake


@pytest.fixture
def app(served: tuple[TestClient, ServerState]) -> tuple[TestClient, ServerState]:  # noqa: F811
    """test_memory_remember's app, which knows Slack's signing secret and its approvers."""
    http, state = served
    state.approvers = frozenset({APPROVER, "alice"})
    state.slack_signing_secret = SIGNING_SECRET
    return http, state


def click(
    http: TestClient, run: str, action: str, user: str = APPROVER, **signing: Any
) -> dict[str, Any]:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "bob"},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "actions": [{"action_id": action, "value": json.dumps({"run": run})}],
    }
    body, headers = slack_request(payload, **signing)
    response = http.post("/slack/interactions", content=body, headers=headers)
    return {"status": response.status_code} | (
        response.json() if response.status_code == 200 else {}
    )


def submit(
    http: TestClient, view: dict[str, Any], root_cause: str, note: str, user: str = APPROVER
) -> dict[str, Any]:
    """Slack's view_submission of the modal as it was opened, with the fields filled in."""
    values = {
        ROOT_CAUSE: {ROOT_CAUSE: {"type": "plain_text_input", "value": root_cause}},
        NOTE: {NOTE: {"type": "plain_text_input", "value": note}},
    }
    payload = {
        "type": "view_submission",
        "user": {"id": user, "username": "bob"},
        "view": view | {"id": "V0MODAL1", "state": {"values": values}},
    }
    body, headers = slack_request(payload)
    response = http.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def verdicts(state: ServerState) -> list[tuple[str | None, bool, str | None]]:
    return [(e.verdict, e.confirmed, e.confirmed_by) for e in entries(state)]


def test_right_and_wrong_judge_the_findings_and_leave_the_incident_open(
    app: tuple[TestClient, ServerState],
) -> None:
    http, state = app
    run, incident = investigated(http, state)
    answer = click(http, run, RIGHT_ACTION)
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert answer["text"] == (
        f"Recorded: bob ({APPROVER}) says the findings of run {run} are right."
    )
    assert verdicts(state) == [("right", True, f"slack:{APPROVER}")]
    answer = click(http, run, WRONG_ACTION)
    assert answer["text"].endswith("are wrong.")
    assert verdicts(state) == [("wrong", False, f"slack:{APPROVER}")]
    (entry,) = entries(state)
    assert entry.confirmed_at is not None
    after = incident_of(state, run)
    assert after.status == incident.status != "resolved" and after.resolution_notes is None


def test_forged_stale_and_unallowed_clicks_change_nothing(
    app: tuple[TestClient, ServerState], slack: ModalSlack
) -> None:
    http, state = app
    run, _ = investigated(http, state)
    for signing in ({"secret": "not-the-signing-secret"}, {"age": 600}):
        assert click(http, run, RIGHT_ACTION, **signing) == {"status": 401}
    assert click(http, run, RESOLVE_ACTION, secret="forged")["status"] == 401
    refused = click(http, run, WRONG_ACTION, user=STRANGER)
    assert refused["text"] == "bob may not judge or resolve incidents."
    refused = click(http, run, RESOLVE_ACTION, user=STRANGER)
    assert "may not judge or resolve" in refused["text"]
    assert verdicts(state) == [(None, False, None)] and slack.views == []
    # The value names only the run; a run that is not there, or a value that is no run, is not
    # trusted further.
    assert click(http, "no-such-run", RIGHT_ACTION)["text"] == "Not recorded: no run no-such-run."
    body, headers = slack_request(
        {
            "type": "block_actions",
            "user": {"id": APPROVER},
            "actions": [{"action_id": RIGHT_ACTION, "value": '{"run": 7}'}],
        }
    )
    assert http.post("/slack/interactions", content=body, headers=headers).status_code == 400
    assert verdicts(state) == [(None, False, None)]


def test_a_run_without_findings_cannot_be_judged(app: tuple[TestClient, ServerState]) -> None:
    http, state = app
    run = new_run(http)
    answer = click(http, run, RIGHT_ACTION)
    assert answer["text"].startswith(f"Not recorded: nothing is remembered of run {run}")
    assert entries(state) == []


def test_resolved_by_opens_the_modal_whose_submission_resolves_the_incident(
    app: tuple[TestClient, ServerState], slack: ModalSlack
) -> None:
    http, state = app
    run, incident = investigated(http, state)
    assert click(http, run, RESOLVE_ACTION) == {"status": 200}
    (opened,) = slack.views
    assert opened["trigger_id"] == "13345224609.738474920.8088930838d88f008e0"
    view = opened["view"]
    assert json.loads(view["private_metadata"]) == {"run": run}
    assert incident.title in view["blocks"][0]["text"]["text"]

    refused = submit(http, view, "the node ran out of memory", "cordoned", user=STRANGER)
    assert (
        refused["response_action"] == "errors"
        and "may not resolve" in refused["errors"][ROOT_CAUSE]
    )
    assert submit(http, view, "   ", "cordoned")["response_action"] == "errors"
    assert incident_of(state, run).status != "resolved"

    done = submit(http, view, "  the node ran out of memory ", "cordoned node-3, drained it")
    assert done["response_action"] == "update"
    assert f"Resolved by bob ({APPROVER})" in done["view"]["blocks"][0]["text"]["text"]
    resolved = incident_of(state, run)
    assert (resolved.status, resolved.root_cause_analysis, resolved.resolution_notes) == (
        "resolved",
        "the node ran out of memory",
        "cordoned node-3, drained it",
    )
    # The run's entry is judged right; the human's root cause (not the run's) is their own entry.
    by_run = {e.run_id is not None: e for e in entries(state)}
    assert (by_run[True].verdict, by_run[True].confirmed) == ("right", True)
    assert by_run[False].root_cause == "the node ran out of memory"
    assert {e.confirmed_by for e in by_run.values()} == {f"slack:{APPROVER}"}
    assert {e.resolution_notes for e in by_run.values()} == {"cordoned node-3, drained it"}


def test_the_modal_needs_a_bot_token_and_a_working_slack(
    app: tuple[TestClient, ServerState], slack: ModalSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, state = app
    run, _ = investigated(http, state)
    slack.fail_next(400)
    answer = click(http, run, RESOLVE_ACTION)
    assert answer["text"].startswith("Cannot open the form: Slack views.open failed")
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    assert click(http, run, RESOLVE_ACTION)["text"].startswith(
        "Cannot open the form: no Slack bot token"
    )
    assert slack.views == [] and incident_of(state, run).status != "resolved"
    assert verdicts(state) == [(None, False, None)]
