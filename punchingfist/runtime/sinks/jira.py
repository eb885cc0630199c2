"""Jira: one issue per incident; later runs about the same incident comment on it (REST API v2).

New issues carry the labels `punchingfist` and `pf-incident-<hash>`, the hash of the incident
(`Findings.incident_key`: the Alertmanager group, else the alert fingerprint). Before creating
one the sink searches for an open issue (status category not Done) of the project with that label:
`GET /rest/api/2/search/jql` (Jira Cloud), `GET /rest/api/2/search` where that does not exist
(Jira Server / Data Center). Credentials: `user:api-token` (basic auth, Jira Cloud) or a
personal access token without a colon (bearer, Data Center). The default description says what
each remediation step's fix did (`*Fix (step):* …`). A replayed answer's summary,
description and comments start with the replay mark.
"""

from __future__ import annotations

from typing import Any

import httpx

from punchingfist.runtime.sinks.delivery import Http
from punchingfist.runtime.sinks.findings import REPLAY_MARK, Findings
from punchingfist.runtime.sinks.running import Sent, SinkRun

CREDENTIALS_FIX = (
    "set `credentialsSecret` (`user:api-token`) on the Sink or "
    "`spec.secrets.jiraToken` in the OperatorConfig"
)


def incident_label(findings: Findings) -> str:
    """The label of the incident's issue (a hash: group keys hold characters labels cannot)."""
    return "pf-incident-" + findings.incident_hash


def deliver(run: SinkRun) -> Sent:
    credentials = run.secret(CREDENTIALS_FIX)
    if ":" in credentials:
        user, _, token = credentials.partition(":")
        auth: dict[str, Any] = {"auth": httpx.BasicAuth(user, token)}
    else:
        auth = {"headers": {"Authorization": f"Bearer {credentials}"}}
    base = str(run.config["endpoint"]).rstrip("/") + "/rest/api/2"
    project = str(run.config["project"])
    findings = run.findings
    label = incident_label(findings)
    description = run.template() or _description(findings)
    if findings.replayed:
        description = f"*{REPLAY_MARK}*\n\n{description}"
    http = run.http("Jira")
    existing = _open_issue(http, base, project, label, auth)
    if existing is not None:
        reply = http.request(
            "POST", f"{base}/issue/{existing}/comment", json={"body": description}, **auth
        )
        comment = (reply.json() or {}).get("id")
        return Sent(
            external_id=existing,
            link=_browse(run, existing),
            detail=f"commented on {existing} (open issue for {label})",
            extra={"issue": existing, "comment": comment, "created": False},
        )
    labels = ["punchingfist", label, *[str(x) for x in run.config.get("labels") or []]]
    fields = {
        "project": {"key": project},
        "issuetype": {"name": str(run.config.get("issueType") or "Incident")},
        "summary": _summary(findings),
        "description": description,
        "labels": list(dict.fromkeys(labels)),
    }
    reply = http.request("POST", f"{base}/issue", json={"fields": fields}, **auth)
    key = str((reply.json() or {}).get("key") or "")
    return Sent(
        external_id=key or None,
        link=_browse(run, key) if key else None,
        detail=f"created {key} in {project}",
        extra={"issue": key, "created": True},
    )


def _open_issue(
    http: Http, base: str, project: str, label: str, auth: dict[str, Any]
) -> str | None:
    jql = (
        f'project = "{project}" AND labels = "{label}" AND statusCategory != Done '
        "ORDER BY created ASC"
    )
    params = {"jql": jql, "maxResults": "1", "fields": "key,status"}
    reply = http.request("GET", f"{base}/search/jql", params=params, accept=(404,), **auth)
    if reply.status == 404:  # Jira Server / Data Center: the classic search
        reply = http.request("GET", f"{base}/search", params=params, **auth)
    issues = (reply.json() or {}).get("issues") or []
    return str(issues[0].get("key")) if issues and issues[0].get("key") else None


def _summary(findings: Findings) -> str:
    severity = f"[{findings.severity}] " if findings.severity else ""
    text = f"{severity}{findings.alertname or findings.workflow}: {findings.summary}"
    return " ".join(findings.marked(text).split())[:250]


def _description(findings: Findings) -> str:
    lines = [f"h3. {findings.alertname or findings.workflow}", "", findings.summary, ""]
    if findings.root_cause:
        lines += ["*Root cause:* " + findings.root_cause, ""]
    if findings.recommendations:
        lines += ["*Recommendations:*", *[f"* {item}" for item in findings.recommendations], ""]
    for fix in findings.fixes:
        lines += [f"*Fix ({fix.step}):* {fix.text()}", ""]
    if findings.confidence is not None:
        lines.append(f"*Confidence:* {findings.confidence:.0%}")
    lines.append(f"*Workflow:* {findings.workflow} | *run:* {findings.run}")
    if findings.run_link:
        lines.append(f"[Investigation run|{findings.run_link}]")
    if findings.alert_link:
        lines.append(f"[Alert|{findings.alert_link}]")
    return "\n".join(lines)


def _browse(run: SinkRun, key: str) -> str:
    return f"{str(run.config['endpoint']).rstrip('/')}/browse/{key}"
