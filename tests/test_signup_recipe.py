"""docs/api.md's "Signing up without a browser", run as written: its shell blocks, with curl, against
a live server (so the recipe cannot rot). Only the settings block is replaced (this server, a fresh
address) and the pasted link (the one the server really e-mailed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sdk.conftest import ROOT, LiveServer

SECTION = "## Signing up without a browser"
EMAIL = "recipe@example.com"
PASSWORD = "a long and unusual passphrase 42"


class MailingServer(LiveServer):
    """The live server with its e-mails written to a folder the test reads."""

    def __init__(self, mail_dir: Path, log_dir: Path) -> None:
        super().__init__(periodic_every=None, log_dir=log_dir)
        self.mail_dir = mail_dir

    def env(self) -> dict[str, str]:
        return {**super().env(), "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                "EMAIL_FILE_PATH": str(self.mail_dir)}


@pytest.fixture
def server(transactional_db, tmp_path: Path) -> Iterator[MailingServer]:  # type: ignore[no-untyped-def]
    running = MailingServer(tmp_path / "mail", tmp_path)
    running.start(timeout=120)  # a busy machine may take a while to import the server
    yield running
    running.stop()


def recipe_blocks() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_documented_signup_recipe_works(server: MailingServer, tmp_path: Path) -> None:
    assert shutil.which("curl"), "the recipe uses curl"
    settings, sign_up, verify_and_key = recipe_blocks()
    assert "FLOWDECK=" in settings and "EMAIL=" in settings and "PASSWORD=" in settings
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLOWDECK": server.url, "EMAIL": EMAIL,
           "PASSWORD": PASSWORD}
    work = tmp_path / "work"
    work.mkdir()

    first = bash(sign_up, work, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "401", first.stdout  # signed up, verification pending: 401 by design
    pending = json.loads((work / "signup.json").read_text())
    assert any(flow.get("id") == "verify_email" and flow.get("is_pending") for flow in pending["data"]["flows"]), \
        pending

    [mail] = list((tmp_path / "mail").iterdir())
    link = re.search(r"https?://\S+/account/verify-email/[^\s\"<]+", mail.read_text())
    assert link, mail.read_text()
    assert "%3A" in link.group(0)  # the key comes URL-encoded: the recipe must decode it
    [paste] = [line for line in verify_and_key.splitlines() if line.startswith("LINK=")]
    rest = verify_and_key.replace(paste, f"LINK='{link.group(0)}'")

    # The shell functions and variables of the first block carry over, as in one terminal session.
    second = bash(sign_up.split("\n# 1.")[0] + rest, work, env)
    assert second.returncode == 0, second.stdout + second.stderr
    me = json.loads(second.stdout)
    assert me["user"]["email"] == EMAIL, me
    assert [w["name"] for w in me["workspaces"]] == ["Acme CI"], me  # the key acts in the workspace it was made in
