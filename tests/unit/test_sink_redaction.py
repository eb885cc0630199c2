"""Sink error messages never carry a credential, in any form a service may echo it back."""

from __future__ import annotations

import base64

from punchingfist.runtime.redaction import redact


def test_a_credential_is_redacted_as_given_as_basic_auth_and_as_the_password_alone() -> None:
    credentials = "bot@example.com:jira-api-token-1234"
    basic = base64.b64encode(credentials.encode()).decode()
    echoed = f"refused {credentials}; sent Basic {basic}; token jira-api-token-1234 expired"
    text = redact(echoed, [credentials, "xoxb-slack-token"])
    assert "jira-api-token-1234" not in text and basic not in text
    assert text == "refused ***; sent Basic ***; token *** expired"
