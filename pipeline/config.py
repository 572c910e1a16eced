"""Config sections owned by `pipeline/`: ZeroMQ endpoints and the reject output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator

from storage.section import Section


class CurveConfig(Section):
    """CURVE keys for tcp:// endpoints, loopback included (zmq.auth key files)."""

    server_secret: Path
    client_secret: Path
    authorized_clients: Path = Field(description="Folder of client public key files.")


class PipelineConfig(Section):
    # insecure and curve come first: the endpoint validators below read them.
    insecure: bool = Field(default=False, description=(
        "Allow tcp:// endpoints without CURVE: any local user (or host, off loopback) can read "
        "and send messages. Logged as a WARNING by every stage at every start."))
    curve: CurveConfig | None = None
    frames: str = Field(default="ipc://{run_dir}/frames", description="Station -> workers.")
    results: str = Field(default="ipc://{run_dir}/results", description="Workers -> decision.")
    decisions: str = Field(default="ipc://{run_dir}/decisions", description="Decision PUB, for observers.")
    relay_in: str = Field(default="ipc://{run_dir}/relay", description="Decision -> reject controller.")
    storage_in: str = Field(default="ipc://{run_dir}/storage", description="Decision -> storage writer.")
    images: str = Field(default="ipc://{run_dir}/images", description="Workers -> storage writer (pixels).")
    control: str = Field(default="ipc://{run_dir}/control", description="Stages -> supervisor heartbeats.")
    workers: int = Field(default=1, ge=1, le=16)
    hwm: int = Field(default=120, ge=1, description="Messages queued per socket before the sender drops.")
    bind_any: bool = Field(default=False, description="Allow tcp:// endpoints on non-loopback addresses.")
    batch: int = Field(default=6, ge=1, le=64, description="Views per inference call at most.")
    stall_s: float = Field(default=10.0, ge=1.0, description="A running stage silent this long is restarted "
                                                              "(stages beat every 0.5 s).")
    start_timeout_s: float = Field(
        default=120.0, gt=0, description="A (re)started stage's time to its first heartbeat: a loaded PC "
                                         "starts a process slowly, and stall_s counts only from then.")

    @field_validator("frames", "results", "decisions", "relay_in", "storage_in", "images", "control")
    @classmethod
    def _tcp_needs_curve(cls, url: str, info: ValidationInfo) -> str:
        """Loopback is no protection: any local user can connect to 127.0.0.1."""
        if url.startswith("tcp://") and info.data.get("curve") is None and not info.data.get("insecure"):
            raise ValueError("a tcp:// endpoint needs CURVE keys: set pipeline.curve (server_secret, "
                             "client_secret, authorized_clients), or pipeline.insecure: true to accept "
                             "unauthenticated plain text")
        return url


class RejectBase(Section):
    port: str = Field(
        default="pty", description="Serial device; 'pty' makes a pseudo-terminal (no hardware).")
    baudrate: int = Field(default=9600, gt=0)
    low_latency: bool = Field(default=True, description="FTDI low-latency mode where supported.")
    confirm_port: str | None = Field(default=None, description="Optional reject-confirm sensor.")


class RelayRejectConfig(RejectBase):
    """A PC-timed relay: pulse when the container reaches the ejector."""

    driver: Literal["relay"]
    pulse_ms: float = Field(default=40.0, gt=0)
    method: Literal["bytes", "rts", "dtr"] = "bytes"
    on_bytes: str = Field(default="A00101A2", description="Hex sent to close the relay (LCUS-1 boards).")
    off_bytes: str = Field(default="A00100A1", description="Hex sent to open the relay.")

    @field_validator("on_bytes", "off_bytes")
    @classmethod
    def _hex(cls, value: str) -> str:
        try:
            if bytes.fromhex(value):
                return value
        except ValueError:
            pass
        raise ValueError("must be hex bytes, e.g. A00101A2 (spaces allowed)")


class PlcRejectConfig(RejectBase):
    """A PLC that tracks containers itself: told `<seq> REJECT|PASS` per container."""

    driver: Literal["plc"]
    message: str = Field(default="{seq} {decision}\n", description="Fields: {seq} {decision} {reason} "
                         "{section} {cavity} (the mould; 0 when the gate did not read it).")
    heartbeat_ms: float = Field(
        default=0.0, ge=0, description="Send `heartbeat` this often (0: off), so that a PLC programmed to "
                                       "reject everything when it stops ejects whatever a dead PC cannot decide.")
    heartbeat: str = Field(default="HB\n", min_length=1, description="The heartbeat line.")

    @field_validator("message")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        """A misspelt field must stop the start, not fail on the first container."""
        try:
            template.format(seq=1, decision="PASS", reason="ok", section=1, cavity=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown field or bad format ({exc}); use {{seq}} {{decision}} {{reason}} "
                             "{section} {cavity}") from None
        return template


RejectConfig = Annotated[Union[RelayRejectConfig, PlcRejectConfig], Field(discriminator="driver")]
