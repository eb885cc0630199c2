"""The agent step: an instructor-structured LLM tool loop (D8)."""
