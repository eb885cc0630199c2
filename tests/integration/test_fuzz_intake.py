"""Generated bodies against the webhook on SQLite and PostgreSQL: never a 5xx, never a
partial write. Every 2xx stores exactly what its answer counts; every 4xx stores nothing.

Three kinds of body: any JSON (NaN, Infinity, huge integers, NUL and lone surrogates in
strings and names), Alertmanager notifications with fields replaced by hostile values (text,
times and offsets at and past the edges, numbers), and mangled bytes of a valid one. The
Source takes a few alerts and starts fewer runs, so the limits are crossed too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from punchingfist.store import Alert, Incident, WorkflowRun
from tests.integration.intake_support import counts, example, post, webhook

EXAMPLES = {"any-json": 600, "notifications": 1500, "mangled-bytes": 600}
"""Per store: 2,700 bodies, about 25 s of CPU on SQLite and 40 s on PostgreSQL."""
LIMITS = "maxAlerts: 4\n    maxRunsPerNotification: 2"

text = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(categories=["Cs", "Cc", "Lo", "So"]), max_size=20),  # surrogates too
    st.sampled_from(["\x00", "a\x00", "\ud800", "\udfff", "\U0001f44a", "", " ", "\\", "'\""]),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "ü", "\x00"]), st.integers(250, 1100)),
)
numbers = st.one_of(
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63) - 1, 10**30, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
)
times = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "0001-01-02T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-01:00",
            "9999-12-29T23:59:59Z",
            "2026-11-26T10:00:00+23:59",
            "2026-11-26T10:00:00-23:59",
            "2026-11-26T10:00:00+24:00",
            "2026-11-26T10:00:00",
            "2026-11-26T10:00:00.123456789Z",
            "2026-13-01T00:00:00Z",
            "2026-11-26",
            "now",
            "",
        ]
    ),
    st.datetimes().map(lambda t: t.isoformat()),
    st.builds(
        lambda day, hours, minutes: f"{day}T12:00:00{hours:+03d}:{minutes:02d}",
        st.dates().map(lambda d: d.isoformat()),
        st.integers(-30, 30),
        st.integers(0, 59),
    ),
    numbers,
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
labels = st.dictionaries(text, text, max_size=4) | json_values
ALERT_FIELDS = {
    "status": st.sampled_from(["firing", "resolved"]) | json_values,
    "labels": labels.map(lambda d: {"alertname": "Fuzz", **d} if isinstance(d, dict) else d),
    "annotations": labels,
    "startsAt": times,
    "endsAt": times,
    "generatorURL": text | json_values,
    "fingerprint": text | json_values,
}
PAYLOAD_FIELDS = {
    "groupKey": text,
    "receiver": text,
    "externalURL": text,
    "truncatedAlerts": numbers,
    "groupLabels": labels,
    "commonLabels": labels,
    "commonAnnotations": labels,
    "status": st.sampled_from(["firing", "resolved"]),
    "version": st.sampled_from(["4", 4, "3"]),
}


@st.composite
def notifications(draw: st.DrawFn) -> dict[str, Any]:
    """A valid notification of 1 to 6 alerts with some fields replaced or removed."""
    body = example()
    template = body["alerts"][0]
    fingerprints = st.sampled_from(["fa", "fb", "fc", "fd", "fe", "ff", "fg"])
    body["alerts"] = [
        {
            **template,
            "fingerprint": draw(fingerprints),
            "status": draw(st.sampled_from(["firing", "resolved"])),
            "labels": {**template["labels"], "n": str(n)},
        }
        for n in range(draw(st.integers(1, 6)))
    ]
    for name in draw(st.sets(st.sampled_from(sorted(PAYLOAD_FIELDS)), max_size=2)):
        body[name] = draw(PAYLOAD_FIELDS[name])
    for alert in body["alerts"]:
        for name in draw(st.sets(st.sampled_from(sorted(ALERT_FIELDS)), max_size=2)):
            if draw(st.booleans()):
                alert[name] = draw(ALERT_FIELDS[name])
            else:
                alert.pop(name, None)
    return body


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A valid notification's bytes with a few bytes replaced, inserted or cut."""
    data = bytearray(json.dumps(example()).encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["replace", "insert", "cut"]))
        piece = draw(
            st.sampled_from(
                [
                    b"\\u0000",
                    b"\\ud800",
                    b"NaN",
                    b"1e999",
                    b"\x00",
                    b"\xff",
                    b'"',
                    b"{",
                    b"]",
                    b"99999999999999999999",
                ]
            )
        )
        if action == "cut":
            del data[at : at + draw(st.integers(1, 40))]
        else:
            data[at : at + (len(piece) if action == "replace" else 0)] = piece
    return bytes(data)


BODIES = {"any-json": json_values, "notifications": notifications(), "mangled-bytes": mangled()}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", list(BODIES))
def test_generated_bodies_get_no_5xx_and_leave_no_partial_rows(
    intake_database_url: str, kind: str
) -> None:
    with webhook(intake_database_url, LIMITS) as (http, state):
        seen: dict[int, int] = {}

        @settings(
            max_examples=EXAMPLES[kind],
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(body=BODIES[kind])
        def check(body: Any) -> None:
            before = counts(state)
            response = post(http, body)
            after = counts(state)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (response.status_code, response.text, body)
            if response.status_code >= 400:
                assert after == before, (response.text, body)
                assert response.json()["error"]
                return
            answer = response.json()
            assert response.status_code == 200
            assert after["alerts"] - before["alerts"] == answer["new"], (answer, body)
            assert after["runs"] - before["runs"] == len(answer["runs"]), (answer, body)
            assert after["outbox"] - before["outbox"] == len(answer["runs"]), (answer, body)
            assert (
                answer["new"] + answer["updated"] + answer["resolved"] + answer["filtered"]
                == answer["received"]
            )
            assert answer["suppressed"] <= answer["new"]

        check()
        with state.sessions() as session:  # everything stored reads back (times, JSON)
            for model in (Alert, Incident, WorkflowRun):
                session.scalars(select(model)).all()
            for run in session.scalars(select(WorkflowRun)):
                assert run.arguments["event"]["alert"]["fingerprint"] == run.fingerprint
    assert sum(seen.values()) >= EXAMPLES[kind] // 2
    if kind == "notifications":  # the generated bodies reach the store, and are refused too
        assert (
            seen.get(200, 0) > EXAMPLES[kind] // 20 < sum(n for s, n in seen.items() if s >= 400)
        ), seen
