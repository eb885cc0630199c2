"""The exception tree of Punching Fist.

    PunchingFistError                 every error we raise on purpose
    ├── InvalidResource               a user's resource is malformed (field path + fix)
    ├── InvalidInput                  several resources of one input are malformed
    ├── TemplateError                 a template string does not parse or render
    │   ├── TemplateSyntaxError       ... does not parse (resource, field, line, column)
    │   ├── TemplateSecurityError     ... tries to leave the sandbox
    │   └── TemplateRenderError       ... fails while rendering (undefined value, bad filter input)
    ├── CompileError                  a valid resource cannot become an Argo manifest
    ├── InvalidManifest               a compiled Argo manifest the local engine cannot run as is
    └── NotSupportedYet               a documented feature that this build does not implement

Every error carries a message written for the person who wrote the resource: it names the
resource, the field and, where one exists, the fix.
"""

from __future__ import annotations


class PunchingFistError(Exception):
    """Base class of every error Punching Fist raises on purpose."""


class InvalidResource(PunchingFistError):
    """A resource does not match its schema. ``problems`` lists ``(field path, message)``."""

    def __init__(
        self, resource: str, problems: list[tuple[str, str]], *, what: str = "resource"
    ) -> None:
        self.resource = resource
        self.problems = problems
        lines = [f"{resource}: invalid {what}"]
        lines += [f"  {path}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class InvalidInput(PunchingFistError):
    """Several resources of one input are invalid; ``errors`` holds each one."""

    def __init__(self, errors: list[PunchingFistError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(error) for error in errors))


class TemplateError(PunchingFistError):
    """A template string is wrong. Knows where it came from when the caller told it."""

    def __init__(
        self,
        message: str,
        *,
        resource: str | None = None,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.resource = resource
        self.field = field
        self.line = line
        self.column = column
        super().__init__(self._format())

    def _format(self) -> str:
        where = [part for part in (self.resource, self.field) if part]
        if self.line is not None:
            where.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        return (": ".join(where) + ": " if where else "") + self.message

    def located(self, *, resource: str | None = None, field: str | None = None) -> TemplateError:
        """Return a copy of this error that also names the resource and field."""
        return type(self)(
            self.message,
            resource=resource or self.resource,
            field=field or self.field,
            line=self.line,
            column=self.column,
        )


class TemplateSyntaxError(TemplateError):
    """The template does not parse."""


class TemplateSecurityError(TemplateError):
    """The template tries to reach outside the sandbox (dunder attributes, private names)."""


class TemplateRenderError(TemplateError):
    """The template parsed but could not be rendered with the given values."""


class CompileError(PunchingFistError):
    """A Workflow cannot be compiled. ``resource`` and ``field`` say where."""

    def __init__(self, message: str, *, resource: str, field: str | None = None) -> None:
        self.resource = resource
        self.field = field
        self.message = message
        super().__init__(f"{resource}: {field + ': ' if field else ''}{message}")


class InvalidManifest(PunchingFistError):
    """An Argo manifest given to the local engine is malformed (names the field and the value)."""


class NotSupportedYet(PunchingFistError):
    """A feature of the design document that this build does not implement yet."""

    def __init__(self, feature: str) -> None:
        self.feature = feature
        super().__init__(f"{feature} is not supported yet")
