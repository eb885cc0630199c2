"""What every control-surface request passes first: credentials from the headers, then a body
read with a limit while it streams (a chunked post of gigabytes is cut at the limit, not
buffered), then JSON that the database can store."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from punchingfist.server.access import Caller, Permission, check
from punchingfist.server.state import ServerState


def problem(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An error answer: `{"error": message, **extra}`, with `headers` on the response."""
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


def too_large(limit: int) -> JSONResponse:
    return problem(413, f"body larger than {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (TooLarge) as soon as it passes `limit` bytes: by its Content-Length
    when it has one, else while the chunks arrive."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge(limit)
        except ValueError:
            pass  # the server framing the request already refuses a malformed length
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise TooLarge(limit)
    return bytes(chunks)


async def read_json(request: Request, state: ServerState) -> Any | JSONResponse:
    """The body as JSON (strict: no NaN or Infinity), or the 4xx answer to send instead."""
    try:
        body = await read_body(request, state.max_body_bytes)
    except TooLarge as error:
        return too_large(error.limit)
    try:
        return json.loads(body or b"{}", parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        return problem(400, f"the body is not JSON: {error}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def unauthenticated(what: str = "this endpoint") -> JSONResponse:
    return problem(
        401,
        f"{what} needs `Authorization: Bearer <token>`: a Kubernetes token in the cluster, the "
        "server's API token in embedded mode (see docs/operations.md, Access)",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def admit(
    state: ServerState, request: Request, permission: Permission
) -> Caller | JSONResponse:
    """The authenticated caller allowed `permission`, or the 401/403 answer. Headers only: the
    body is not read before this. The reviews call the API server: off the event loop."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    found = await run_in_threadpool(check, state.access, state.approver_tokens, headers, permission)
    if found is None:
        return unauthenticated()
    if isinstance(found, str):
        return problem(403, f"{found} may not {permission}")
    return found
