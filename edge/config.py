"""The whole line in one file: load config.yaml, validate it once, explain what is wrong.

Each package owns the schema of its own section (camera/config.py, engines/config.py,
pipeline/config.py, storage/config.py); this module composes them, checks what spans
sections (six distinct views, banks), resolves relative paths against the file's folder,
and turns validation errors into one line per problem that names the key, the value,
what is allowed and the line of the file. A key written twice in one mapping is refused
with both lines: YAML would silently keep the second (a stray `late_result: pass` below
the fail-safe one would turn the line fail-open).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from camera.config import CameraConfig, GateConfig, MachineConfig, check_six_views
from storage.section import Section
from storage.moulds import parse_mould
from engines.config import EngineConfig
from pipeline.config import PipelineConfig, RejectConfig
from storage.config import SpcConfig, StorageConfig
from edge.ui.config import UiConfig

DEFAULT_PATH = Path("config.yaml")


class ConfigError(Exception):
    """config.yaml cannot be used; the message names the key and the fix."""


class LineConfig(Section):
    id: str = Field(default="line-1", min_length=1)
    speed_cpm: float = Field(gt=0, le=1200, description="Containers per minute.")
    travel_time_ms: float = Field(gt=0, description="Gate to ejector.")
    relay_lead_ms: float = Field(default=30.0, ge=0, description="Actuator lead time.")
    rotation_delay_ms: float = Field(default=150.0, ge=0, description="Left bank to right bank.")
    late_result: Literal["reject", "pass"] = Field(
        default="reject", description="A missing or late result: fail-safe reject, or pass (logged).")
    machine: MachineConfig | None = Field(
        default=None, description="The IS machine (sections x cavities): the simulated gate assigns its "
        "moulds; mould names are checked against it.")
    reject_moulds: list[str] = Field(
        default=[], description="Moulds (SECTION-CAVITY) whose every container is rejected, reason 'mould'; "
        "`edge mould reject` adds more at run time.")

    @field_validator("reject_moulds")
    @classmethod
    def _mould_names(cls, names: list[str]) -> list[str]:
        return [str(parse_mould(name)) for name in names]

    @model_validator(mode="after")
    def _moulds_on_machine(self) -> "LineConfig":
        if self.machine is not None:
            for name in self.reject_moulds:
                self.machine.check(name)
        return self

    @model_validator(mode="after")
    def _deadline_before_ejector(self) -> "LineConfig":
        if self.relay_lead_ms + self.rotation_delay_ms >= self.travel_time_ms:
            raise ValueError(
                f"travel_time_ms ({self.travel_time_ms:g}) must exceed rotation_delay_ms + relay_lead_ms "
                f"({self.rotation_delay_ms + self.relay_lead_ms:g}): no time would be left to decide")
        return self

    @property
    def period_s(self) -> float:
        return 60.0 / self.speed_cpm


class MetricsConfig(Section):
    address: str = Field(default="127.0.0.1:9108",
                         description="Prometheus endpoint host:port (port 1-65535, or 0 for any free one).")
    allow_remote: bool = Field(
        default=False, description="Listen on an address other machines reach: metrics have no authentication.")

    @field_validator("address")
    @classmethod
    def _host_and_port(cls, address: str) -> str:
        host, port = split_address(address)
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected host:port with a port from 1 to 65535, e.g. 127.0.0.1:9108")
        if not host:
            raise ValueError("expected host:port, e.g. 127.0.0.1:9108 (a host is needed)")
        return address

    @model_validator(mode="after")
    def _remote_needs_opt_in(self) -> "MetricsConfig":
        if not self.loopback and not self.allow_remote:
            raise ValueError(f"address {self.address}: other machines could read the line's metrics without "
                             "authentication; use 127.0.0.1:PORT, or set metrics.allow_remote: true")
        return self

    @property
    def loopback(self) -> bool:
        """Whether only this PC can reach the endpoint."""
        host = split_address(self.address)[0].strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    def exposure(self) -> str | None:
        """The warning to log at every start when the endpoint is open to the network."""
        if self.loopback:
            return None
        return (f"metrics.address {self.address} is reachable from other machines and has no authentication "
                "(metrics.allow_remote: true)")


def split_address(address: str) -> tuple[str, str]:
    """'host:port' -> (host, port); an IPv6 host is written in brackets, [::1]:9108."""
    host, _, port = address.rpartition(":")
    return host, port


class AppConfig(Section):
    line: LineConfig
    cameras: list[CameraConfig] = Field(min_length=6, max_length=6)
    gate: GateConfig
    pipeline: PipelineConfig = PipelineConfig()
    engine: EngineConfig = EngineConfig()
    storage: StorageConfig = StorageConfig()
    spc: SpcConfig = SpcConfig()
    reject: RejectConfig
    metrics: MetricsConfig = MetricsConfig()
    ui: UiConfig = UiConfig()

    @model_validator(mode="after")
    def _six_distinct_views(self) -> "AppConfig":
        check_six_views(self.cameras)
        ids = [cam.id for cam in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        return self

    @model_validator(mode="after")
    def _bad_mould_on_machine(self) -> "AppConfig":
        for cam in self.cameras:
            bad = getattr(cam, "bad_mould", None)
            if bad is None:
                continue
            if self.line.machine is None:
                raise ValueError(f"camera {cam.id!r}: bad_mould needs line.machine (sections, cavities), "
                                 "which says which mould made each container")
            self.line.machine.check(bad.mould)
        return self

    @property
    def data_dir(self) -> Path:
        return self.storage.data_dir

    @property
    def database_url(self) -> str:
        return self.storage.database.replace("{data_dir}", str(self.storage.data_dir))


class DuplicateKey(yaml.YAMLError):
    """A mapping names the same key twice; the message gives the key and both lines."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *defaults' merges are meant to be overridden
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            if key in first:
                raise DuplicateKey(f"{line}: {key}: duplicate key (first at line {first[key]}); "
                                   "YAML would keep only the second value: remove one")
            first[key] = line
        return super().construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, UniqueKeyLoader.construct_mapping)


def load_config(path: str | Path = DEFAULT_PATH) -> AppConfig:
    """Read and validate a config file; raise ConfigError naming every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({getattr(exc, 'strerror', None) or exc}); "
                          "pass --config PATH or create config.yaml") from None
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKey as exc:
        raise ConfigError(f"{path}:{exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (line, cameras, gate, ...)")
    return parse_config(raw, path, text)


def parse_config(raw: dict[str, Any], path: Path = DEFAULT_PATH, text: str | None = None) -> AppConfig:
    """Validate an already-parsed mapping; relative paths resolve against `path`'s folder."""
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_explain(err, path, text) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    return _machine_to_renderers(_resolve_paths(config, path.resolve().parent))


def _explain(err: dict[str, Any], path: Path, text: str | None) -> str:
    keys = [k for k in err["loc"] if not (isinstance(k, str) and k in _DRIVER_TAGS)]
    key = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".") or "(top level)"
    where = f"{path}:{_line_of(text, keys)}" if text and _line_of(text, keys) else str(path)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{where}: {key}: unknown key; remove it or check its spelling"
    if err["type"] == "missing":
        return f"{where}: {key}: missing; add it"
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) or key in _SECRET_KEYS else f" = {value!r}"
    return f"{where}: {key}{shown}: {msg}"


# Keys whose value is never repeated in a message: a database URL may hold a password.
_SECRET_KEYS = {"storage.database"}


# pydantic puts the union member's tag into the error location (cameras.3.pylon.serial).
_DRIVER_TAGS = {"synthetic", "pylon", "genicam", "batch", "simulated", "serial_modem",
                "serial_lines", "relay", "plc"}


def _line_of(text: str, keys: list[Any]) -> int | None:
    """1-based line of the deepest key of `keys` found in the YAML text."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            match = [(k, v) for k, v in node.value if k.value == key]
            if not match:
                break
            line, node = match[0][0].start_mark.line + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _resolve_paths(config: AppConfig, base: Path) -> AppConfig:
    def absolute(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    cameras = []
    for cam in config.cameras:
        updates = {name: absolute(getattr(cam, name))
                   for name in ("emulate_images", "cti", "path") if hasattr(cam, name)}
        cameras.append(cam.model_copy(update=updates))
    storage = config.storage.model_copy(update={"data_dir": absolute(config.storage.data_dir)})
    return config.model_copy(update={"cameras": cameras, "storage": storage})


def _machine_to_renderers(config: AppConfig) -> AppConfig:
    """Synthetic cameras render container n as made by the mould the simulated gate gives it."""
    cameras = [cam.model_copy(update={"machine": config.line.machine}) if cam.driver == "synthetic" else cam
               for cam in config.cameras]
    return config.model_copy(update={"cameras": cameras})
