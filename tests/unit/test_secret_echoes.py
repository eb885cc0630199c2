"""A service that echoes the credential it was sent in its error must not put that credential
in the agent's record or the model's prompt: the runtime knows its secrets and redacts them.

Both were leaks issue #18's secret-leak test found (runtime/redaction.py now covers them).
"""

from __future__ import annotations

import pytest

from punchingfist.api.runspec import LLMSettings
from punchingfist.runtime.agent.decisions import decision_model
from punchingfist.runtime.agent.llm import LLMError, ModelClient
from punchingfist.runtime.tools import promql
from tests.fakes.saas import Answer, FakeService, Request

TOKEN = "promtoken-3f9a1c0e7b5d4a2f"
KEY = "sk-llmkey-8c2e6a4f0b1d3e5a"


class Echoing(FakeService):
    """Refuses every request, quoting the Authorization header it got, as careless auth
    proxies and some OpenAI-compatible servers do."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def handle(self, request: Request) -> Answer:
        message = f"credentials {request.headers.get('authorization')} are not valid here"
        if self.status == 401:  # the OpenAI error shape
            return 401, {"error": {"message": message, "type": "invalid_request_error"}}
        return self.status, {"status": "error", "errorType": "bad_data", "error": message}


def test_promql_does_not_repeat_its_token_from_an_error() -> None:
    with Echoing(400) as prometheus:
        result = promql.run(promql.PromqlSettings(url=prometheus.url, token=TOKEN), "up")
    assert result.status == "error" and "400" in (result.error or "")
    assert TOKEN not in (result.error or "") + result.output


def test_the_model_client_does_not_repeat_its_key_from_an_error() -> None:
    with Echoing(401) as endpoint:
        settings = LLMSettings(
            provider="openai-compatible", type="openai-compatible", endpoint=endpoint.url, model="m"
        )
        client = ModelClient(settings, environ={"LLM_API_KEY": KEY}, max_retries=0)
        with pytest.raises(LLMError) as failed:
            client.decide(decision_model((), (), True), [{"role": "user", "content": "hi"}])
    assert "401" in str(failed.value)
    assert KEY not in str(failed.value)
