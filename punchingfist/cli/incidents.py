"""`punchingfist incidents`: list, show (with what the fixes of its runs did) and resolve
incidents through the server's REST API."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from punchingfist.cli.approve import server_token
from punchingfist.cli.exit_codes import EXIT_OK
from punchingfist.errors import PunchingFistError
from punchingfist.runtime.sinks.fixes import FixOutcome

DEFAULT_SERVER_ENV = "PUNCHINGFIST_SERVER"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    incidents = commands.add_parser(
        "incidents",
        help="list, show and resolve incidents (a human's root cause, note and verdict)",
        description=(
            "Incidents as the server records them. `resolve` adds the truth: the incident is "
            "resolved with your note, root cause and lessons, and what the runs found is marked "
            "right or wrong (each knowledge entry records whether a human confirmed it). "
            "Talks to the server's REST API (--server, or $PUNCHINGFIST_SERVER) with a bearer "
            "token: --token-file PATH (the server's api-token file in embedded mode) or "
            "$PUNCHINGFIST_TOKEN (a Kubernetes token in the cluster, e.g. `kubectl create "
            "token NAME`; resolving needs `resolve` on incidents.punchingfist.io)."
        ),
    )
    actions = incidents.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="the latest incidents", description="The latest incidents, newest first."
    )
    listing.add_argument("--status", help="only these: open, investigating, resolved")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(handler=_list)
    show = actions.add_parser(
        "show",
        help="one incident, its alerts and what is remembered of it",
        description="One incident: its summary and root cause, its alerts, its knowledge "
        "entries (what each run found, and whether a human confirmed it).",
    )
    show.add_argument("incident", metavar="ID", help="the incident's id")
    show.add_argument("--json", action="store_true", help="print the server's JSON")
    show.set_defaults(handler=_show)
    resolve = actions.add_parser(
        "resolve",
        help="resolve an incident with a note and the confirmed root cause",
        description=(
            "Resolve an incident: it is marked resolved (its time to resolve recorded), with "
            "your note, lessons and root cause. --right / --wrong judge what the runs found; a "
            "root cause that is a run's own confirms it, a different one is remembered as "
            "yours (a knowledge entry without a run)."
        ),
    )
    resolve.add_argument("incident", metavar="ID", help="the incident's id")
    resolve.add_argument("--root-cause", metavar="TEXT", help="the root cause, as confirmed")
    resolve.add_argument("--note", metavar="TEXT", help="how it was resolved")
    resolve.add_argument("--lessons", metavar="TEXT", help="lessons learned")
    verdict = resolve.add_mutually_exclusive_group()
    verdict.add_argument(
        "--right",
        dest="verdict",
        action="store_const",
        const="right",
        help="what the runs found was right",
    )
    verdict.add_argument(
        "--wrong",
        dest="verdict",
        action="store_const",
        const="wrong",
        help="what the runs found was wrong",
    )
    resolve.add_argument(
        "--by",
        metavar="NAME",
        help="who resolves, with the embedded API token (otherwise the server knows who the "
        "token is and this must match it)",
    )
    resolve.set_defaults(handler=_resolve)
    for action in (listing, show, resolve):
        action.add_argument(
            "--server",
            metavar="URL",
            default=os.environ.get(DEFAULT_SERVER_ENV),
            help=f"the Punching Fist server, e.g. http://punchingfist:8080 (default: "
            f"${DEFAULT_SERVER_ENV})",
        )
        action.add_argument(
            "--token-file",
            metavar="PATH",
            help="the bearer token to send (default: $PUNCHINGFIST_TOKEN)",
        )


def _list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    items = _call(args, "GET", "/api/v1/incidents", params=params)["items"]
    if not items:
        print("no incidents")
    for item in items:
        print(
            f"{item['id']}  {item['status']:<13} {item['severity']:<8} "
            f"{item.get('created_at') or '':<32} {item['title']}"
        )
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    incident = _call(args, "GET", f"/api/v1/incidents/{args.incident}")
    knowledge = _call(args, "GET", f"/api/v1/incidents/{args.incident}/knowledge")["items"]
    if args.json:
        print(json.dumps(incident | {"knowledge": knowledge}, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"{incident['title']}  ({incident['id']})")
    print(f"  status: {incident['status']}, severity {incident['severity']}")
    for name in ("root_cause_analysis", "resolution_notes", "lessons_learned"):
        if incident.get(name):
            print(f"  {name.replace('_', ' ')}: {incident[name]}")
    summary = (incident.get("ai_summary") or {}).get("summary")
    if summary:
        print(f"  AI summary: {summary}")
    for entry in incident.get("remediations") or []:
        if (fix := FixOutcome.from_dict(entry)) is not None:
            print(f"  fix {fix.step} (run {entry.get('run')}, {entry.get('at')}): {fix.text()}")
    for alert in incident.get("alerts") or []:
        print(f"  alert {alert['alert_name']} ({alert['status']}, {alert['received_at']})")
    for entry in knowledge:
        print(f"  {_entry_line(entry)}")
    return EXIT_OK


def _resolve(args: argparse.Namespace) -> int:
    body = {
        key: value
        for key, value in (
            ("root_cause", args.root_cause),
            ("note", args.note),
            ("lessons_learned", args.lessons),
            ("verdict", args.verdict),
            ("by", args.by),
        )
        if value is not None
    }
    answer = _call(args, "POST", f"/api/v1/incidents/{args.incident}/resolve", json=body)
    print(f"resolved: {answer['title']} ({answer['id']})")
    for entry in answer.get("knowledge") or []:
        print(f"  {_entry_line(entry)}")
    return EXIT_OK


def _entry_line(entry: dict[str, Any]) -> str:
    who = "human" if entry.get("run_id") is None else f"run {entry['run_id']}"
    judged = (
        f"{entry.get('verdict') or 'judged'} ({entry['confirmed_by']})"
        if entry.get("confirmed_by")
        else "not judged"
    )
    flag = "confirmed" if entry.get("confirmed") else "unconfirmed"
    return f"{who}: {entry.get('outcome')}, {flag}, {judged}: {entry.get('root_cause') or '-'}"


def _call(args: argparse.Namespace, method: str, path: str, **options: Any) -> Any:
    import httpx

    if not args.server:
        raise PunchingFistError(f"give --server URL (or set ${DEFAULT_SERVER_ENV})")
    token = server_token(args)
    if not token:
        raise PunchingFistError(
            "the server needs credentials: give --token-file PATH (the server's api-token file "
            "in embedded mode) or set $PUNCHINGFIST_TOKEN"
        )
    base = args.server.rstrip("/")
    try:
        with httpx.Client(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            response = http.request(method, path, **options)
    except httpx.HTTPError as error:
        raise PunchingFistError(f"cannot reach the server at {base}: {error}") from error
    if response.status_code >= 400:
        try:
            found = response.json()
            message = found.get("error") or response.text
            fields = [f"{p['field']}: {p['message']}" for p in found.get("problems") or []]
        except (ValueError, AttributeError, KeyError, TypeError):
            message, fields = response.text, []
        detail = f" ({'; '.join(fields)})" if fields else ""
        raise PunchingFistError(f"the server refused ({response.status_code}): {message}{detail}")
    return response.json()
