"""CurveZMQ: key pairs on disk, an encrypted publisher, and who may subscribe.

Keys are ZeroMQ certificate files in the format ``zmq.auth`` reads (``NAME.key`` public,
``NAME.key_secret`` secret). Secret files are created readable by their owner only,
and never through a link or over an existing file: a link planted where the secret is
about to be written would otherwise send the secret wherever it points. A directory
that others may write to is refused for keys, since they could swap the files in it.
Only a short fingerprint of a *public* key ever appears in a log line.

The allow-list (``--allow-clients DIR``) is read once, at start-up: every ``*.key`` in
DIR must be a readable public key, or the daemon refuses to start (pyzmq's own
authenticator would instead reject *every* client, silently, for one unreadable
file). It is enforced by :class:`AllowList`, a ZAP handler (ZeroMQ RFC 27) that logs
each refused client once, with its address and key fingerprint.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import logging
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from serstream.errors import UserError
from serstream.ratelog import RateLimitedLog

__all__ = ["CurveServer", "CurveClient", "AllowList", "make_keys", "fingerprint", "load_allowed"]

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks its context's ZAP handler


def fingerprint(public_key: bytes) -> str:
    """Short, non-secret name for a public key, for logs."""
    return hashlib.sha256(public_key).hexdigest()[:12]


# ---------------------------------------------------------------------- files
def _check_directory(directory: Path, what: str) -> None:
    """Refuse a directory that someone else could write to: they could replace the keys."""
    try:
        st = directory.stat()
    except OSError as exc:
        raise UserError(f"{what}: {directory}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UserError(f"{what}: {directory} is writable by others, who could replace the keys in it "
                        f"(chmod go-w {directory})")


def _certificate(public: bytes, secret: bytes | None) -> str:
    """A certificate in the format zmq.auth writes and reads."""
    kind = "Secret" if secret is not None else "Public"
    lines = [
        f"#   ****  Generated on {datetime.datetime.now():%Y-%m-%d %H:%M:%S} by serstream  ****",
        f"#   ZeroMQ CURVE **{kind}** Certificate",
        "#   " + ("DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions." if secret is not None
                  else "Exchange securely, or use a secure mechanism to verify the contents"),
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _create(path: Path, text: str, mode: int) -> None:
    """Write a new file: never through a link, never over an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise UserError(f"{path} already exists (or is a link): not overwriting keys") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a link: not writing a key through it") from None
        raise UserError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode, follow_symlinks=False)  # exactly, whatever the umask


def make_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair; the secret file is readable by its owner only."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UserError(f"cannot create {directory}: {exc.strerror}") from None
    _check_directory(directory, "serstream keys")
    public_path = directory / f"{name}.key"
    secret_path = directory / f"{name}.key_secret"
    for path in (public_path, secret_path):
        if os.path.lexists(path):
            raise UserError(f"{path} already exists: not overwriting keys")
    public, secret = zmq.curve_keypair()
    _create(secret_path, _certificate(public, secret), 0o600)
    _create(public_path, _certificate(public, None), 0o644)
    return public_path, secret_path


def _load(path: Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"key file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read key file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block start-up for ever
        raise UserError(f"{path}: not a regular file")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"{path}: not a readable ZeroMQ key file ({reason})") from None
    if len(public) != 40:
        raise UserError(f"{path}: not a ZeroMQ key file (no 40-character public key)")
    if want_secret:
        if secret is None:
            raise UserError(f"{path}: holds no secret key (pass the .key_secret file)")
        if len(secret) != 40:
            raise UserError(f"{path}: not a ZeroMQ key file (no 40-character secret key)")
        mode = st.st_mode & 0o077
        if mode:
            raise UserError(f"{path}: secret key is readable by others (chmod 600 {path})")
        _check_directory(path.parent, f"{path}: its directory")
    return public, secret


def load_allowed(directory: Path) -> frozenset[bytes]:
    """The public keys (Z85) of ``directory``'s ``*.key`` files; any that cannot be read
    refuses the whole directory, in one line."""
    if not directory.is_dir():
        raise UserError(f"--allow-clients: {directory} is not a directory")
    _check_directory(directory, "--allow-clients")
    keys = set()
    for path in sorted(directory.glob("*.key")):
        keys.add(_load(path, want_secret=False)[0])
    if not keys:
        raise UserError(f"--allow-clients: no public keys (*.key) in {directory}")
    return frozenset(keys)


# ---------------------------------------------------------------------- who may subscribe
class AllowList:
    """A ZAP handler admitting the CURVE clients whose public key is in ``keys``.

    Runs on its own thread with a socket bound to the context's ZAP endpoint, as long
    as the publisher lives. Each refused client is logged once per address and key,
    with the key's fingerprint (rate-limited); the socket monitor counts it.
    """

    def __init__(self, ctx: zmq.Context, keys: frozenset[bytes], source: Path) -> None:
        self.keys = keys
        self.source = source
        self._log = RateLimitedLog(log)
        self._sock = ctx.socket(zmq.REP)
        self._sock.linger = 0
        try:
            self._sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise RuntimeError(f"a ZAP handler already serves this context ({exc})") from None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="zap", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._sock.poll(100):
                    continue
                request = self._sock.recv_multipart()
                self._sock.send_multipart(self._answer(request))
        except zmq.ContextTerminated:
            pass  # the publisher is going away; the socket must still close so term() can end
        finally:
            self._sock.close(0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:  # not RFC 27: nothing to answer to but the protocol error
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"bad ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism, *credentials = request
        if mechanism == b"CURVE" and credentials and len(credentials[0]) == 32:
            key = zmq.utils.z85.encode(credentials[0])
            if key in self.keys:
                return [version, request_id, b"200", b"OK", fingerprint(key).encode(), b""]
            self._log((address, key), "refused a client at %s: its key %s is not in --allow-clients %s",
                      address.decode(errors="replace") or "?", fingerprint(key), self.source)
        else:
            self._log((address, mechanism), "refused a client at %s: it does not use CurveZMQ",
                      address.decode(errors="replace") or "?")
        return [version, request_id, b"400", b"not allowed", b"", b""]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


@dataclass(frozen=True)
class CurveServer:
    """Server side: the publisher's key pair, and optionally the clients allowed in.

    Made by :meth:`load`, which reads and checks everything, so a bad key or key
    directory is refused at start-up, in one line, before anything is bound.
    """

    public_key: bytes
    secret_key: bytes = field(repr=False)
    allowed: frozenset[bytes] | None = None  # None: any client that has the server's public key
    allow_dir: Path | None = None

    @classmethod
    def load(cls, secret_file: Path, allow_dir: Path | None = None) -> CurveServer:
        public, secret = _load(secret_file, want_secret=True)
        assert secret is not None
        allowed = load_allowed(allow_dir) if allow_dir is not None else None
        return cls(public, secret, allowed, allow_dir)

    def apply(self, sock: zmq.Socket, ctx: zmq.Context) -> AllowList | None:
        """Make ``sock`` a CURVE server. Returns the ZAP handler enforcing the allow-list
        (None without one), which the caller stops when it closes the socket."""
        # the keys first: if libzmq refuses one, no ZAP thread is left behind to hold the
        # context open
        sock.curve_secretkey = self.secret_key
        sock.curve_publickey = self.public_key
        sock.curve_server = True
        if self.allowed is None:
            return None
        sock.zap_domain = b"serstream"
        return AllowList(ctx, self.allowed, self.allow_dir or Path("?"))


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
