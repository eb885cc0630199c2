"""Talk to the model (D8): the openai client against any OpenAI-compatible endpoint, wrapped by
instructor so each turn is a validated `Decision`. Retries on 429/5xx come from the client."""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from punchingfist.api.pricing import DEFAULT_PRICES, Price, cost_usd, lookup
from punchingfist.api.runspec import LLMSettings
from punchingfist.errors import PunchingFistError
from punchingfist.runtime.redaction import RedactingFilter, redact

# Base URLs of the hosted providers' OpenAI-compatible APIs.
HOSTED = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1/",
    "together": "https://api.together.xyz/v1",
}
LOCAL_DEFAULT = "http://localhost:11434/v1"
SELF_HOSTED = ("local", "ollama", "openai-compatible")
_LOG_FILTER = RedactingFilter([])
"""instructor logs each failed attempt with the endpoint's error text, which may quote the key:
the step's log gets the keys of every client made here redacted."""
for _name in ("instructor", "openai", "httpx"):
    logging.getLogger(_name).addFilter(_LOG_FILTER)


class LLMError(PunchingFistError):
    """The model could not be reached or gave no valid answer."""


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cost_usd: float | None = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt: int, completion: int, price: Price | None) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.calls += 1
        if price is None:
            self.cost_usd = None
        elif self.cost_usd is not None:
            self.cost_usd += cost_usd(price, prompt, completion)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "model_calls": self.calls,
            "cost_usd": round(self.cost_usd, 6) if self.cost_usd is not None else None,
        }


ENDPOINT_ENV, MODEL_ENV, MODE_ENV = "PF_LLM_ENDPOINT", "PF_LLM_MODEL", "PF_LLM_MODE"


def with_overrides(settings: LLMSettings, environ: Mapping[str, str]) -> LLMSettings:
    """Embedded mode points every agent step at one OpenAI-compatible endpoint (`punchingfist
    run --llm-endpoint`, or Ollama found on this machine) through these variables."""
    endpoint = environ.get(ENDPOINT_ENV)
    if not endpoint:
        return settings
    update: dict[str, Any] = {
        "endpoint": endpoint,
        "type": "openai-compatible",
        "provider": "openai-compatible",
        "mode": environ.get(MODE_ENV),
    }
    if environ.get(MODEL_ENV):
        update["model"] = environ[MODEL_ENV]
    return settings.model_copy(update=update)


def base_url(settings: LLMSettings) -> str:
    if settings.endpoint:
        url = settings.endpoint.rstrip("/")
        path = urllib.parse.urlsplit(url).path
        return url if path.endswith("/v1") or "/v1/" in path else url + "/v1"
    if settings.type in HOSTED:
        return HOSTED[settings.type]
    if settings.type in SELF_HOSTED:
        return LOCAL_DEFAULT
    raise LLMError(f"LLM provider {settings.provider!r} needs an endpoint")


def mode_name(settings: LLMSettings) -> str:
    """instructor mode: JSON_SCHEMA for Ollama and llama.cpp's server, TOOLS elsewhere."""
    if settings.mode:
        return settings.mode.upper()
    if settings.type == "ollama":
        return "JSON_SCHEMA"
    if settings.endpoint and urllib.parse.urlsplit(settings.endpoint).port == 11434:
        return "JSON_SCHEMA"
    return "TOOLS"


def price(settings: LLMSettings) -> Price | None:
    """The model's price: OperatorConfig `spec.llm.prices` first, then nothing for a
    self-hosted provider, then the built-in list prices; None when unknown (no cost is
    counted, and a cost budget cannot stop the step)."""
    model = settings.model or ""
    own = lookup(model, settings.prices) if settings.prices else None
    if own is not None:
        return own
    if settings.type in SELF_HOSTED:
        return (0.0, 0.0)
    return lookup(model, DEFAULT_PRICES)


class Model(Protocol):
    """What the agent loop talks to: a live model (ModelClient) or a replay (ReplayClient)."""

    usage: Usage

    @property
    def model(self) -> str: ...

    def decide(self, response_model: Any, messages: Sequence[dict[str, str]]) -> Any: ...


@dataclass
class ModelClient:
    """One model for one step: `decide()` returns a validated Decision and counts tokens."""

    settings: LLMSettings
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    timeout: float = 120.0
    max_retries: int = 3
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        import instructor
        import openai

        key = self.environ.get("LLM_API_KEY") or (
            "not-needed" if self.settings.type in SELF_HOSTED else None
        )
        if key is None:
            raise LLMError(
                f"LLM provider {self.settings.provider!r} needs an API key: set LLM_API_KEY "
                "(OperatorConfig spec.secrets.llmApiKey fills it from a Secret)"
            )
        self._openai = openai.OpenAI(
            base_url=base_url(self.settings),
            api_key=key,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        self._client = instructor.from_openai(
            self._openai, mode=getattr(instructor.Mode, mode_name(self.settings))
        )
        self._price = price(self.settings)
        self._errors: tuple[type[BaseException], ...] = (openai.OpenAIError,)
        self._secrets = [] if key == "not-needed" else [key]
        _LOG_FILTER.secrets.extend(s for s in self._secrets if s not in _LOG_FILTER.secrets)

    @property
    def model(self) -> str:
        return self.settings.model or "default"

    def on_answer(self, handler: Callable[[str], None]) -> None:
        """Call `handler` with each raw answer of the model (its tool call's arguments, or its
        content), before validation: what it asked for even when that was refused."""

        def raw(completion: Any) -> None:
            for choice in getattr(completion, "choices", None) or []:
                message = getattr(choice, "message", None)
                calls = getattr(message, "tool_calls", None) or []
                texts = [getattr(c.function, "arguments", "") for c in calls]
                texts += [message.content] if message is not None and message.content else []
                for text in texts:
                    handler(text)

        self._client.on("completion:response", raw)

    def decide(self, response_model: Any, messages: Sequence[dict[str, str]]) -> Any:
        from instructor.core import InstructorRetryException

        extra: dict[str, Any] = {}
        if self.settings.temperature is not None:
            extra["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            extra["max_tokens"] = self.settings.max_tokens
        try:
            decision, completion = self._client.chat.completions.create_with_completion(
                model=self.model,
                response_model=response_model,
                messages=cast(Any, list(messages)),
                max_retries=2,
                **extra,
            )
        except InstructorRetryException as error:
            self._count(getattr(error, "total_usage", None))
            message = redact(str(error), self._secrets)
            raise LLMError(f"the model gave no valid Decision after retries: {message}") from error
        except self._errors as error:
            message = redact(f"{type(error).__name__}: {error}", self._secrets)
            raise LLMError(f"the model endpoint failed: {message}") from error
        self._count(getattr(completion, "usage", None))
        return decision

    def _count(self, usage: Any) -> None:
        if usage is None:
            return
        self.usage.add(
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
            self._price,
        )
