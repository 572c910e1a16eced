"""ZeroMQ endpoints from config: ipc:// on one PC, tcp:// (+ CURVE) across machines.

Who binds: the stage that outlives its peers or has many of them. The station binds
`frames` (workers come and go), the decision stage binds `results`, the reject
controller and the storage writer bind their inputs, the supervisor binds `control`.
Senders that must not lose messages across a peer's restart *connect*: a connecting
PUSH keeps its queue while the peer is away (ZMQ_IMMEDIATE off), up to its HWM.

High-water marks: every socket gets `pipeline.hwm` messages. Senders use NOBLOCK where
a full queue must not stall a clock-driven stage (station, workers); the caller counts
the drop.

Who may talk to the line: only this user. ipc:// sockets live in folders of mode 0700
(the run folder, or a private short folder when its path is too long for a Unix
socket); abstract sockets, which any local user can reach, are refused. Every tcp://
endpoint, loopback included, uses CURVE unless `pipeline.insecure: true`, which every
stage that opens one logs as a WARNING.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import socket
import stat
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

LINGER_MS = 2000
IPC_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux


def run_dir(data_dir: Path) -> Path:
    """`<data_dir>/run`, created or tightened to 0700: its sockets, lock and state are this user's alone."""
    folder = Path(data_dir) / "run"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _make_private(folder)
    return folder


def resolve(endpoint: str, data_dir: Path, key: str = "endpoint") -> str:
    """Fill in {run_dir}; make sure an ipc:// socket's folder is private to this user.

    A path too long for a Unix socket (a deep data folder) moves to a short private
    folder named after it (`<tmp>/edge-<uid>-<digest>`), the same in every stage.
    """
    url = endpoint.replace("{run_dir}", str(run_dir(data_dir))) if "{run_dir}" in endpoint else endpoint
    if not url.startswith("ipc://"):
        return url
    path = Path(url[6:])
    if url.startswith("ipc://@"):
        raise PipelineError(f"{key} = {endpoint}: abstract sockets can be reached by any local user; "
                            "use ipc://{run_dir}/NAME")
    if len(str(path)) > IPC_PATH_MAX:
        digest = hashlib.sha1(str(path.parent.absolute()).encode()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / f"edge-{os.geteuid()}-{digest}"
        try:
            folder.mkdir(mode=0o700)
            log.info("%s: path too long for a Unix socket; using %s", key, folder)
        except FileExistsError:
            pass
        path = folder / path.name
    _check_private(path.parent, key)
    return f"ipc://{path}"


def _make_private(folder: Path) -> None:
    """Tighten a folder this user owns to 0700; refuse one another user owns."""
    st = folder.stat()
    if st.st_uid != os.geteuid():
        raise PipelineError(f"{folder}: owned by uid {st.st_uid}, not this user ({os.geteuid()}); "
                            "give the data folder to the user that runs the line")
    if stat.S_IMODE(st.st_mode) & 0o077:
        folder.chmod(0o700)


def _check_private(folder: Path, key: str) -> None:
    """Another user who can write the socket's folder can replace the socket with their own."""
    try:
        st = folder.stat()
    except FileNotFoundError:
        raise PipelineError(f"{key}: folder {folder} does not exist; create it with mode 0700") from None
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o022:
        raise PipelineError(f"{key}: socket folder {folder} must be a folder of this user that others cannot "
                            f"write (mode {stat.S_IMODE(st.st_mode):o}, uid {st.st_uid}); use ipc://{{run_dir}}/NAME "
                            "or a folder of mode 0700")


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
        self._warned: set[str] = set()

    def url(self, name: str) -> str:
        return resolve(getattr(self.config, name), self.data_dir, f"pipeline.{name}")

    def _base(self, kind: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.SNDHWM, self.config.hwm)
        sock.setsockopt(zmq.RCVHWM, self.config.hwm)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        return sock

    def _curve(self, name: str, url: str) -> bool:
        """Whether `url` uses CURVE: every tcp:// endpoint does, unless the config says insecure
        (config validation refuses tcp:// without keys otherwise)."""
        if not url.startswith("tcp://"):
            return False
        if self.config.curve is not None:
            return True
        if url not in self._warned:
            self._warned.add(url)
            log.warning("pipeline.insecure: pipeline.%s = %s carries plain text without CURVE: any local "
                        "user%s can read and send messages on it", name, url,
                        "" if is_loopback(url) else " and any host that reaches it")
        return False

    def bind(self, name: str, kind: int) -> zmq.Socket:
        url = self.url(name)
        if not is_loopback(url) and not self.config.bind_any:
            raise PipelineError(f"pipeline.{name} = {url}: listens on a non-loopback address; set "
                                "pipeline.bind_any: true (and curve keys) to allow it")
        sock = self._base(kind)
        if self._curve(name, url):
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
        if self._curve(name, url):
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
