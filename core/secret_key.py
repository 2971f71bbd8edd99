"""Django's ``SECRET_KEY``: what makes one weak, and embedded mode's own key.

The key signs e-mail-verification and password-reset links, sessions' auth hashes and CSRF tokens:
with a known key anyone can forge a verification link for any address. So outside embedded mode a
server refuses to start with the public default or a short key (``core/checks.py``); embedded mode,
one process on one machine, generates a random key once and keeps it in ``var/``.

Imported by ``config/settings.py``: nothing here may need Django set up.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# Published in this repository: it protects nothing, so it is refused outside embedded mode.
INSECURE_DEFAULT_SECRET_KEY = "embedded-insecure-key-change-me-in-production"
# Django's own deployment check (security.W009) asks for the same.
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE_CHARACTERS = 5
SECRET_KEY_FILE_NAME = "secret_key"


def weakness(key: str) -> str | None:
    """Why ``key`` must not sign anything in a deployment, or None when it is fine."""
    if not key:
        return "SECRET_KEY is not set"
    if key == INSECURE_DEFAULT_SECRET_KEY or key.startswith("django-insecure"):
        return "SECRET_KEY is unset (the public default is used)"
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"SECRET_KEY has {len(key)} characters, fewer than {MIN_SECRET_KEY_LENGTH}"
    if len(set(key)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS:
        return f"SECRET_KEY has fewer than {MIN_SECRET_KEY_UNIQUE_CHARACTERS} different characters"
    return None


def embedded_secret_key(var_dir: Path) -> str:
    """The key kept in ``var_dir/secret_key`` (mode 0600), generated on first use.

    The file is written in full under a temporary name and then linked into place, which fails when
    another process got there first: then that process's key is read, so two processes starting at
    once still agree on one key."""
    path = var_dir / SECRET_KEY_FILE_NAME
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    key = secrets.token_urlsafe(64)
    temporary = var_dir / f".{SECRET_KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(key + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            theirs = path.read_text().strip()
            if theirs:
                return theirs
            os.replace(temporary, path)  # an empty file (a disk that filled up): replace it
        return key
    finally:
        temporary.unlink(missing_ok=True)
