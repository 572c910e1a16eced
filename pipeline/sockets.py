"""ZeroMQ endpoints from config: ipc:// on one PC, tcp:// (+ CURVE) across machines.

Who binds: the stage that outlives its peers or has many of them. The station binds
`frames` (workers come and go), the decision stage binds `results`, the reject
controller and the storage writer bind their inputs, the supervisor binds `control`.
Senders that must not lose messages across a peer's restart *connect*: a connecting
PUSH keeps its queue while the peer is away (ZMQ_IMMEDIATE off), up to its HWM.

High-water marks: every socket gets `pipeline.hwm` messages. Senders use NOBLOCK where
a full queue must not stall a clock-driven stage (station, workers); the caller counts
the drop.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError

LINGER_MS = 2000


def run_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "run"


IPC_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux


def resolve(endpoint: str, data_dir: Path) -> str:
    """Fill in {run_dir}, creating the folder ipc:// sockets live in.

    A path too long for a Unix socket (a deep data folder) becomes an abstract socket
    named after it (Linux): nothing on disk, and the same name in every stage.
    """
    folder = run_dir(data_dir)
    if "{run_dir}" in endpoint:
        folder.mkdir(parents=True, exist_ok=True)
    url = endpoint.replace("{run_dir}", str(folder))
    if url.startswith("ipc://") and not url.startswith("ipc://@") and len(url) - 6 > IPC_PATH_MAX:
        digest = hashlib.sha1(url.encode()).hexdigest()[:16]
        url = f"ipc://@edge-{digest}-{Path(url[6:]).name}"
    return url


def _tcp_host(endpoint: str) -> str | None:
    if not endpoint.startswith("tcp://"):
        return None
    return urlsplit(endpoint).hostname or endpoint[6:].rsplit(":", 1)[0]


def is_loopback(endpoint: str) -> bool:
    host = _tcp_host(endpoint)
    if host is None:
        return True  # ipc://, inproc:// never leave the PC
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


class Endpoints:
    """Opens the sockets of one stage with the config's HWM, bind policy and CURVE keys."""

    def __init__(self, config: PipelineConfig, data_dir: Path, ctx: zmq.Context | None = None) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.ctx = ctx or zmq.Context.instance()
        self._auth: ThreadAuthenticator | None = None

    def url(self, name: str) -> str:
        return resolve(getattr(self.config, name), self.data_dir)

    def _base(self, kind: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.SNDHWM, self.config.hwm)
        sock.setsockopt(zmq.RCVHWM, self.config.hwm)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        return sock

    def _needs_curve(self, url: str) -> bool:
        if not url.startswith("tcp://"):
            return False
        if self.config.curve is None:
            if not is_loopback(url):
                raise PipelineError(f"{url}: a tcp:// endpoint that leaves the PC needs pipeline.curve "
                                    "keys (server_secret, client_secret, authorized_clients)")
            return False
        return True

    def bind(self, name: str, kind: int) -> zmq.Socket:
        url = self.url(name)
        if not is_loopback(url) and not self.config.bind_any:
            raise PipelineError(f"pipeline.{name} = {url}: listens on a non-loopback address; set "
                                "pipeline.bind_any: true (and curve keys) to allow it")
        sock = self._base(kind)
        if self._needs_curve(url):
            self._start_auth()
            public, secret = _load_keys(self.config.curve.server_secret, "server_secret")
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
        try:
            sock.bind(url)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise PipelineError(f"pipeline.{name} = {url}: cannot bind ({exc}); is another `edge run` "
                                "using this data folder, or the port taken?") from None
        return sock

    def connect(self, name: str, kind: int) -> zmq.Socket:
        url = self.url(name)
        sock = self._base(kind)
        if self._needs_curve(url):
            public, secret = _load_keys(self.config.curve.client_secret, "client_secret")
            server_public = _server_public(self.config.curve.server_secret)
            sock.curve_secretkey, sock.curve_publickey = secret, public
            sock.curve_serverkey = server_public
        sock.connect(url)
        return sock

    def _start_auth(self) -> None:
        if self._auth is None:
            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self.config.curve.authorized_clients))

    def close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def _server_public(secret_path: Path) -> bytes:
    """A client needs only the server's public key: prefer the .key beside the .key_secret."""
    public_file = Path(secret_path).with_suffix(".key")
    path = public_file if public_file.is_file() else secret_path
    return _load_keys(path, "server_secret", secret=False)[0]


def _load_keys(path: Path, key: str, secret: bool = True) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"pipeline.curve.{key} = {path}: cannot load the key file ({exc}); "
                            "create keys with zmq.auth.create_certificates") from None
    if secret and secret_key is None:
        raise PipelineError(f"pipeline.curve.{key} = {path}: holds no secret key (use the .key_secret file)")
    return public, secret_key
