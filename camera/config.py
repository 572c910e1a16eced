"""Config sections owned by `camera/`: the six cameras and the gate.

Each driver declares its own settings model with `driver: Literal[...]`, and the
union is discriminated on `driver`, so config.yaml's `driver: pylon` selects the
class and validates only the settings that driver understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from camera.frame import VIEWS
from storage.section import Section
from storage.moulds import parse_mould


def check_six_views(cameras: Sequence) -> None:
    """One camera per view 0-5, each in its view's bank; ValueError naming the camera otherwise.
    The one check of the six views: config.yaml's validator and the station (built from
    configs that need not come from a file) both call it."""
    seen: dict[int, str] = {}
    for cfg in cameras:
        if cfg.view in seen:
            raise ValueError(f"camera {cfg.id!r}: view {cfg.view} is already used by camera "
                             f"{seen[cfg.view]!r}; give each camera its own view 0-5")
        seen[cfg.view] = cfg.id
        bank = "left" if cfg.view < 3 else "right"
        if cfg.bank != bank:
            raise ValueError(f"camera {cfg.id!r}: view {cfg.view} is in the {bank} bank, not {cfg.bank!r}")
    absent = sorted(set(range(VIEWS)) - set(seen))
    if absent:
        raise ValueError(f"no camera for view(s) {absent}; the station needs one camera per view 0-5")


class MachineConfig(Section):
    """The IS machine that forms the containers: which moulds exist (line.machine)."""

    sections: int = Field(ge=1, le=32, description="Sections of the machine (6-20 on most lines).")
    cavities: int = Field(ge=1, le=4, description="Cavities per section (single to quad gob).")

    def check(self, name: str) -> str:
        """`name` ('3-1') if the machine has that mould, else ValueError naming the fix."""
        mould = parse_mould(name)
        if mould.section > self.sections or mould.cavity > self.cavities:
            raise ValueError(f"mould {name!r} is not on a machine of {self.sections} sections x "
                             f"{self.cavities} cavities (line.machine)")
        return str(mould)


class BadMouldConfig(Section):
    """Demo: the renderer gives one mould's containers more defects, so its alarm can be seen."""

    mould: str = Field(description="SECTION-CAVITY, e.g. 3-1.")
    defect_free_share: float = Field(default=0.1, ge=0, le=1)

    @field_validator("mould")
    @classmethod
    def _mould(cls, name: str) -> str:
        return str(parse_mould(name))


class CameraBase(Section):
    id: str = Field(min_length=1, description="Name used in logs, records and metrics.")
    view: int = Field(ge=0, le=5, description="View index 0-5; 0-2 left bank, 3-5 right bank.")
    bank: Literal["left", "right"]
    trigger: Literal["software", "line1", "line2", "line3", "line4"] = "software"
    exposure_us: float = Field(default=2000.0, gt=0)
    gain_db: float = Field(default=0.0, ge=0)
    width: int = Field(default=700, gt=0)
    height: int = Field(default=820, gt=0)
    offset_x: int = Field(default=0, ge=0)
    offset_y: int = Field(default=0, ge=0)
    pixel_format: Literal["Mono8", "RGB8Packed", "BGR8Packed"] = "BGR8Packed"
    grab_timeout_ms: int = Field(default=500, gt=0)


class SyntheticCameraConfig(CameraBase):
    """The glass renderer, live: each gate event renders the container's view."""

    driver: Literal["synthetic"]
    seed: int = 0
    defect_free_share: float = Field(default=0.5, ge=0, le=1)
    bad_mould: BadMouldConfig | None = None
    machine: MachineConfig | None = Field(
        default=None, description="Not written in config.yaml: edge/config.py copies line.machine here, "
        "so the renderer knows which mould made container n.")


class PylonCameraConfig(CameraBase):
    """A Basler camera through pypylon; select by serial number or user-defined name."""

    driver: Literal["pylon"]
    serial: str | None = None
    user_name: str | None = None
    emulate_images: Path | None = Field(
        default=None, description="Emulator only: folder of images the camera serves.")


class GenicamCameraConfig(CameraBase):
    """Any GenTL camera through harvesters and the vendor's .cti producer."""

    driver: Literal["genicam"]
    cti: Path
    serial: str | None = None


class BatchCameraConfig(CameraBase):
    """Plays back the stored views of a captured batch, in order (edge replay)."""

    driver: Literal["batch"]
    path: Path


CameraConfig = Annotated[
    Union[SyntheticCameraConfig, PylonCameraConfig, GenicamCameraConfig, BatchCameraConfig],
    Field(discriminator="driver"),
]


class GateBase(Section):
    debounce_ms: float = Field(default=5.0, ge=0)
    right_bank: "GateConfig | None" = Field(
        default=None, description="A second sensor after the turn fires the right bank (views 3-5) "
        "instead of line.rotation_delay_ms; its events are matched to containers by that delay.")

    @model_validator(mode="after")
    def _one_level(self) -> "GateBase":
        if self.right_bank is not None and self.right_bank.right_bank is not None:
            raise ValueError("right_bank cannot have a right_bank of its own")
        return self


class SimulatedGateConfig(GateBase):
    """A gate that fires at the line speed (containers per minute from `line.speed_cpm`)."""

    driver: Literal["simulated"]


class SerialModemGateConfig(GateBase):
    """The sensor wired to a modem-status input (CTS/DSR/CD) of a USB-serial adapter."""

    driver: Literal["serial_modem"]
    port: str = Field(min_length=1, description="e.g. /dev/ttyUSB0, or loop:// in tests.")
    line: Literal["cts", "dsr", "cd"] = "cts"
    edge: Literal["rising", "falling"] = "rising"
    poll_ms: float = Field(default=1.0, gt=0)


class SerialLinesGateConfig(GateBase):
    """A PLC or microcontroller sends one text line per container (e.g. its sequence)."""

    driver: Literal["serial_lines"]
    port: str = Field(min_length=1)
    baudrate: int = Field(default=115200, gt=0)
    message: str | None = Field(
        default=None, description="The PLC's line, e.g. '{seq} {section} {cavity}': fields separated as written; "
        "none: the line's first integer is the sequence number.")

    @field_validator("message")
    @classmethod
    def _known_fields(cls, template: str | None) -> str | None:
        from camera.gates.template import LineTemplate

        if template is not None:
            LineTemplate(template)  # ValueError naming the unknown field
        return template


GateConfig = Annotated[
    Union[SimulatedGateConfig, SerialModemGateConfig, SerialLinesGateConfig],
    Field(discriminator="driver"),
]

for _gate in (SimulatedGateConfig, SerialModemGateConfig, SerialLinesGateConfig):
    _gate.model_rebuild()
