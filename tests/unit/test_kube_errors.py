"""What is temporary: the kubernetes library's exceptions, as the API server raises them, become
one `KubeError` per kind of answer, and only `punchingfist.kube` decides whether to retry."""

from __future__ import annotations

import json

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from punchingfist.kube import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeGone,
    KubeInvalid,
    KubeNotFound,
    KubeServerError,
    KubeTooManyRequests,
    KubeUnauthorized,
    KubeUnreachable,
)
from punchingfist.kube.errors import api_errors, kube_error


def refusal(code: int, message: str = "refused") -> ApiException:
    """The ApiException the library raises for an answer `code` with a Status body."""
    body = json.dumps({"kind": "Status", "code": code, "message": message}).encode()
    response = urllib3.HTTPResponse(body=body, status=code, reason="Reason", preload_content=True)
    try:
        ApiException.from_response(http_resp=response, body=body.decode(), data=None)
    except ApiException as error:
        return error
    raise AssertionError(f"the library raised nothing for HTTP {code}")


@pytest.mark.parametrize(
    ("code", "kind", "temporary"),
    [
        (500, KubeServerError, True),
        (503, KubeServerError, True),
        (504, KubeServerError, True),
        (429, KubeTooManyRequests, True),
        (400, KubeError, False),
        (401, KubeUnauthorized, False),
        (403, KubeForbidden, False),
        (404, KubeNotFound, False),
        (409, KubeConflict, False),
        (410, KubeGone, False),
        (418, KubeError, False),
        (422, KubeInvalid, False),
    ],
)
def test_an_answer_of_the_api_server_is_temporary_or_not(
    code: int, kind: type[KubeError], temporary: bool
) -> None:
    error = kube_error("create Workflow ns/run", refusal(code, "the message"))
    assert type(error) is kind
    assert error.temporary is temporary
    assert error.status == code
    assert str(error) == "cannot create Workflow ns/run: the message"


def test_no_answer_is_temporary() -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 1)
    cause = NewConnectionError(pool, "Connection refused")  # type: ignore[arg-type]
    for exception in (MaxRetryError(pool, "/apis", cause), ConnectionRefusedError("refused")):
        error = kube_error("read workflows ns/run", exception)
        assert isinstance(error, KubeUnreachable)
        assert error.temporary and error.status is None


def test_an_answer_without_a_status_body_names_the_status() -> None:
    error = kube_error("list workflows in ns", ApiException(status=502, reason="Bad Gateway"))
    assert isinstance(error, KubeServerError)
    assert str(error) == "cannot list workflows in ns: 502 Bad Gateway"


def test_other_exceptions_are_not_kube_errors() -> None:
    assert kube_error("read", KeyError("metadata")) is None
    with pytest.raises(KeyError), api_errors("read"):
        raise KeyError("metadata")


def test_api_errors_chain_the_library_error_and_pass_a_missing_object_only_when_asked() -> None:
    with pytest.raises(KubeNotFound) as raised, api_errors("read workflows ns/gone"):
        raise refusal(404)
    assert isinstance(raised.value.__cause__, ApiException)
    reached = []
    with api_errors("read workflows ns/gone", missing_ok=True):
        raise refusal(404)
    reached.append(True)
    assert reached
    with pytest.raises(KubeForbidden), api_errors("read workflows ns/x", missing_ok=True):
        raise refusal(403)


def test_a_kube_error_raised_inside_passes_as_it_is() -> None:
    conflict = KubeConflict("Secret s exists and is not ours", status=409)
    with pytest.raises(KubeConflict) as raised, api_errors("apply Secret ns/s"):
        raise conflict
    assert raised.value is conflict and not raised.value.temporary
