"""Approver tokens for the REST approval endpoint: where they are read from, whose they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from punchingfist.server.access import bearer_token, token_owner
from punchingfist.server.state import SecretStore

TOKENS = {"alice": "a-secret", "bob": "b-secret"}


def test_a_mounted_secret_gives_one_token_per_approver(tmp_path: Path) -> None:
    """Kubernetes mounts a Secret as one file per key, next to hidden `..data` entries."""
    folder = tmp_path / "approver-tokens"
    (folder / "..2026_11_27_01_00_00.000").mkdir(parents=True)
    (folder / "..data").symlink_to(folder / "..2026_11_27_01_00_00.000")
    (folder / "alice").write_text("a-secret\n")
    (folder / "bob").write_text("b-secret")
    store = SecretStore(tmp_path, values={("approver-tokens", "carol"): "c-secret"})
    assert store.keys("approver-tokens") == {**TOKENS, "carol": "c-secret"}
    assert store.keys("absent") == {}


def owner(tokens: dict[str, str], header: str | None) -> str | None:
    return token_owner(tokens, bearer_token(header))


def test_the_bearer_token_names_its_owner() -> None:
    assert owner(TOKENS, "Bearer a-secret") == "alice"
    assert owner(TOKENS, "bearer  b-secret ") == "bob"
    for header in (None, "", "Bearer", "Bearer ", "Basic a-secret", "Bearer a-secret2", "a-secret"):
        assert owner(TOKENS, header) is None
    assert owner({"empty": ""}, "Bearer ") is None
    assert owner({}, "Bearer a-secret") is None


CONFIG = """apiVersion: punchingfist.io/v1alpha1
kind: OperatorConfig
metadata: {name: default}
spec: {approvals: {approvers: [alice], tokensSecret: approver-tokens}}
"""


def test_serve_refuses_a_tokens_secret_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "punchingfist.cli",
            "serve",
            "-f",
            str(tmp_path / "config.yaml"),
            "--database-url",
            f"sqlite:///{tmp_path}/pf.db",
            "--secrets-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "spec.approvals.tokensSecret 'approver-tokens': no tokens found" in done.stderr
    assert "Traceback" not in done.stderr
