"""Throw-away SoftHSM2 tokens for tests: a ``softhsm2.conf`` pointing at a temporary token
folder, and a token initialised with ``softhsm2-util``."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
LABEL, PIN, SO_PIN = "anfu", "1234", "5678"
UTIL = shutil.which("softhsm2-util")

AVAILABLE = UTIL is not None and Path(MODULE).exists()
MISSING = "SoftHSM2 is not installed (Debian softhsm2; `make tools` installs it)"
needs_softhsm = pytest.mark.skipif(not AVAILABLE, reason=MISSING)


@dataclass(frozen=True)
class Token:
    conf: Path
    module: str = MODULE
    label: str = LABEL
    pin: str = PIN

    def env(self) -> dict[str, str]:
        """What a platform process needs to keep its keys on this token."""
        return {"SOFTHSM2_CONF": str(self.conf), "ANFU_KEYSTORE": "pkcs11",
                "ANFU_PKCS11_MODULE": self.module, "ANFU_PKCS11_TOKEN": self.label,
                "ANFU_PKCS11_PIN": self.pin}


def make_token(folder: Path, label: str = LABEL) -> Token:
    assert UTIL is not None
    tokens = folder / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    subprocess.run([UTIL, "--init-token", "--free", "--label", label, "--pin", PIN,
                    "--so-pin", SO_PIN], env={**os.environ, "SOFTHSM2_CONF": str(conf)},
                   check=True, capture_output=True)
    return Token(conf, label=label)


_in_process: list[Token] = []


def in_process_token(tmp_root: Path) -> Token:
    """One token for every in-process test: SoftHSM2 reads SOFTHSM2_CONF when the module is
    first initialised, so this process keeps the first one it made."""
    if not _in_process:
        token = make_token(tmp_root)
        os.environ["SOFTHSM2_CONF"] = str(token.conf)
        _in_process.append(token)
    return _in_process[0]
