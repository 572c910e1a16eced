"""Config sections owned by `pipeline/`: ZeroMQ endpoints and the reject output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field

from camera.config import Section


class CurveConfig(Section):
    """CURVE keys for tcp:// endpoints that leave the PC (zmq.auth key files)."""

    server_secret: Path
    client_secret: Path
    authorized_clients: Path = Field(description="Folder of client public key files.")


class PipelineConfig(Section):
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
    curve: CurveConfig | None = None
    batch: int = Field(default=6, ge=1, le=64, description="Views per inference call at most.")
    stall_s: float = Field(default=10.0, gt=0, description="A stage silent this long is unhealthy.")


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


class PlcRejectConfig(RejectBase):
    """A PLC that tracks containers itself: told `<seq> REJECT|PASS` per container."""

    driver: Literal["plc"]
    message: str = Field(default="{seq} {decision}\n")


RejectConfig = Annotated[Union[RelayRejectConfig, PlcRejectConfig], Field(discriminator="driver")]
