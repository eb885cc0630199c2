"""Secret references: where a secret lives, written as one string.

    vault://PATH#KEY           a key of a Vault KV v2 secret (PATH under secretManager.secretPath)
    aws://NAME[#KEY]           an AWS Secrets Manager secret (NAME after secretPrefix); #KEY picks
                               a key of a JSON secret string
    azure://VAULT/NAME         a secret of Azure Key Vault VAULT (https://VAULT.vault.azure.net)
    k8s://NAMESPACE/NAME#KEY   a key of a Kubernetes Secret
    env://NAME                 an environment variable of the process that resolves it

A reference names a secret; it never holds one, so it may be logged and stored (the audit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from punchingfist.errors import PunchingFistError

SCHEMES = ("vault", "aws", "azure", "k8s", "env")
_FORMS = {
    "vault": "vault://PATH#KEY (e.g. vault://punchingfist/slack#bot-token)",
    "aws": "aws://NAME#KEY or aws://NAME (e.g. aws://punchingfist/slack#bot-token)",
    "azure": "azure://VAULT/NAME (e.g. azure://company-vault/slack-bot-token)",
    "k8s": "k8s://NAMESPACE/NAME#KEY (e.g. k8s://punchingfist/chat-credentials#bot-token)",
    "env": "env://NAME (e.g. env://SLACK_BOT_TOKEN)",
}
_PATH = re.compile(r"^[A-Za-z0-9_.@+=-]+(/[A-Za-z0-9_.@+=-]+)*$")
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,253}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_AZURE_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class SecretError(PunchingFistError):
    """A secret reference that is malformed, or a secret that cannot be read (never its value)."""


@dataclass(frozen=True)
class SecretReference:
    """A parsed reference: `scheme://path#key`."""

    scheme: str
    path: str
    key: str | None = None

    @property
    def text(self) -> str:
        return f"{self.scheme}://{self.path}" + (f"#{self.key}" if self.key else "")

    def __str__(self) -> str:
        return self.text


def is_reference(text: str) -> bool:
    """Whether `text` is written as a reference (`scheme://...`) rather than a Secret name."""
    return "://" in text


def parse_reference(text: str) -> SecretReference:
    """The reference `text`, or SecretError naming it, the form it should have and the fix."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise SecretError(f"{text!r} is not a secret reference: write one of {_all_forms()}")
    if scheme not in SCHEMES:
        raise SecretError(
            f"{text!r}: unknown secret reference scheme {scheme!r}; known: {', '.join(SCHEMES)} "
            f"({_all_forms()})"
        )
    path, hash_, key = rest.partition("#")
    reference = SecretReference(scheme, path, key if hash_ else None)
    problem = _problem(reference, bool(hash_))
    if problem:
        raise SecretError(f"{text!r}: {problem}; write {_FORMS[scheme]}")
    return reference


def _problem(ref: SecretReference, has_hash: bool) -> str | None:
    """What is wrong with a reference of a known scheme, None when nothing."""
    if has_hash and (not ref.key or not _KEY.match(ref.key)):
        return "the key after '#' must be letters, digits, '.', '_' or '-'"
    if not ref.path or not _PATH.match(ref.path) or ".." in ref.path.split("/"):
        return "the path is empty or holds characters other than letters, digits, '/._@+=-'"
    parts = ref.path.split("/")
    if ref.scheme == "vault" and ref.key is None:
        return "a Vault secret holds several keys: name one after '#'"
    if ref.scheme == "azure" and (
        len(parts) != 2 or not all(_AZURE_NAME.match(p) for p in parts) or has_hash
    ):
        return "give the vault's name and the secret's name (letters, digits, '-'), no '#key'"
    if ref.scheme == "k8s" and (len(parts) != 2 or ref.key is None):
        return "give the namespace, the Secret's name and its key"
    if ref.scheme == "k8s" and not all(_DNS.match(p) for p in parts):
        return "namespace and Secret name must be Kubernetes names (lowercase, digits, '-', '.')"
    if ref.scheme == "env" and (not _ENV.match(ref.path) or has_hash):
        return "give one environment variable name, no '#key'"
    return None


def _all_forms() -> str:
    return "; ".join(_FORMS.values())
