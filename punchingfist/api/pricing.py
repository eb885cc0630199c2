"""What model tokens cost: the built-in price table and the lookup of a model's price.

A price is (USD per million input tokens, USD per million output tokens). The built-in table
holds the providers' published list prices as of 2025 (OpenAI's and Anthropic's pricing pages);
they change, and discounts (batch, cached input, contracts) are not in them: check your
provider and put your own figures in OperatorConfig `spec.llm.prices`, which the compiler
passes to every agent step (`LLMSettings.prices`) and which wins over this table.

Keys are model names or glob patterns (`gpt-4.1*`). A lookup takes the exact name first, then
the longest matching pattern (so `gpt-4o-mini*` wins over `gpt-4o*` for `gpt-4o-mini`), and
also tries the part after a `vendor/` prefix (`openai/gpt-4o` as routers spell it).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

Price = tuple[float, float]
"""(USD per million input tokens, USD per million output tokens)."""

PRICES_AS_OF = "2025"
DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI list prices (platform.openai.com pricing, 2025).
    "gpt-4o*": (2.50, 10.00),
    "gpt-4o-mini*": (0.15, 0.60),
    "gpt-4.1*": (2.00, 8.00),
    "gpt-4.1-mini*": (0.40, 1.60),
    "gpt-4.1-nano*": (0.10, 0.40),
    "o3*": (2.00, 8.00),
    "o3-mini*": (1.10, 4.40),
    "o4-mini*": (1.10, 4.40),
    # Anthropic list prices (anthropic.com pricing, 2025).
    "claude-3-sonnet*": (3.00, 15.00),
    "claude-3-5-sonnet*": (3.00, 15.00),
    "claude-3-7-sonnet*": (3.00, 15.00),
    "claude-sonnet-4*": (3.00, 15.00),
    "claude-3-haiku*": (0.25, 1.25),
    "claude-3-5-haiku*": (0.80, 4.00),
    "claude-haiku-4*": (1.00, 5.00),
    "claude-3-opus*": (15.00, 75.00),
    "claude-opus-4*": (15.00, 75.00),
}


def lookup(model: str, table: Mapping[str, Price]) -> Price | None:
    """The price of `model` in `table`: its exact name, else the longest pattern matching it
    (also without a `vendor/` prefix); None when nothing matches."""
    names = [model] + ([model.rsplit("/", 1)[1]] if "/" in model else [])
    for name in names:
        if name in table:
            return table[name]
    for name in names:
        matching = [key for key in table if _pattern(key) and fnmatchcase(name, key)]
        if matching:
            return table[max(matching, key=len)]
    return None


def _pattern(key: str) -> bool:
    return any(char in key for char in "*?[")


def cost_usd(price: Price, input_tokens: int, output_tokens: int) -> float:
    """What `input_tokens` and `output_tokens` cost at `price`."""
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
