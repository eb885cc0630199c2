"""Agent tools (D9): kubectl, promql, curl and declared scripts. Each returns a ToolResult."""

from punchingfist.runtime.tools.base import ToolResult

__all__ = ["ToolResult"]
