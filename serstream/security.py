"""CurveZMQ: key pairs on disk, an encrypted publisher, and who may subscribe.

Keys are ZeroMQ certificate files as ``zmq.auth`` writes them (``NAME.key`` public,
``NAME.key_secret`` secret). Secret files are written with mode 0600 and never
logged; only a short fingerprint of a *public* key ever appears in a log line.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from serstream.errors import UserError

__all__ = ["CurveServer", "CurveClient", "make_keys", "fingerprint"]


def fingerprint(public_key: bytes) -> str:
    """Short, non-secret name for a public key, for logs."""
    return hashlib.sha256(public_key).hexdigest()[:12]


def make_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair; the secret file is readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    public = directory / f"{name}.key"
    secret = directory / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise UserError(f"{public} or {secret} already exists: not overwriting keys")
    old = os.umask(0o077)
    try:
        pub, sec = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old)
    os.chmod(sec, stat.S_IRUSR | stat.S_IWUSR)
    os.chmod(pub, 0o644)
    return Path(pub), Path(sec)


def _load(path: Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise UserError(f"key file not found: {path}")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a ZeroMQ key file ({exc})") from None
    if want_secret:
        if secret is None:
            raise UserError(f"{path}: holds no secret key (pass the .key_secret file)")
        mode = path.stat().st_mode & 0o077
        if mode:
            raise UserError(f"{path}: secret key is readable by others (chmod 600 {path})")
    return public, secret


@dataclass(frozen=True)
class CurveServer:
    """Server side: the publisher's key pair, and optionally the allowed clients."""

    secret_file: Path
    allow_dir: Path | None = None

    def apply(self, sock: zmq.Socket, ctx: zmq.Context) -> tuple[bytes, ThreadAuthenticator | None]:
        """Make ``sock`` a CURVE server. Returns its public key (whose fingerprint may be
        logged) and the authenticator thread enforcing ``allow_dir``, which the caller
        stops when it closes the socket (None without an allow-list)."""
        public, secret = _load(self.secret_file, want_secret=True)
        auth = None
        if self.allow_dir is not None:
            if not self.allow_dir.is_dir():
                raise UserError(f"--allow-clients: {self.allow_dir} is not a directory")
            if not any(self.allow_dir.glob("*.key")):
                raise UserError(f"--allow-clients: no public keys (*.key) in {self.allow_dir}")
            auth = ThreadAuthenticator(ctx)
            auth.start()
            auth.configure_curve(domain="*", location=str(self.allow_dir))
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
        return public, auth


@dataclass(frozen=True)
class CurveClient:
    """Subscriber side: the server's public key and this client's key pair."""

    server_public_file: Path
    secret_file: Path

    def apply(self, sock: zmq.Socket) -> None:
        server_public, _ = _load(self.server_public_file, want_secret=False)
        public, secret = _load(self.secret_file, want_secret=True)
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret
