"""The template dialect (D1): the design document's syntax on a sandboxed Jinja2 environment."""

from punchingfist.templating.dialect import translate, translate_expression
from punchingfist.templating.rendering import (
    Template,
    compile_expression,
    compile_template,
    truthy,
)

__all__ = [
    "Template",
    "compile_expression",
    "compile_template",
    "translate",
    "translate_expression",
    "truthy",
]
