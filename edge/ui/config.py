"""The `ui:` config section: where the operator station listens and how it signs people in."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from storage.section import Section

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UiConfig(Section):
    address: str = Field(default="127.0.0.1", description="Listen address; anything but loopback needs TLS.")
    port: int = Field(default=8080, ge=1, le=65535)
    tls_cert: Path | None = Field(default=None, description="PEM certificate (relative to config.yaml).")
    tls_key: Path | None = Field(default=None, description="PEM private key (relative to config.yaml).")
    session_secret: Path = Field(
        default=Path("ui/session.key"),
        description="Signs session cookies; relative to the data folder, created on first start.")
    session_hours: float = Field(default=12.0, gt=0, description="A sign-in lasts this long.")
    shift_starts: list[str] = Field(
        default=["06:00", "14:00", "22:00"], min_length=1, description="Local times the shifts begin.")
    recent_rejects: int = Field(default=12, ge=1, le=100, description="Reject cards on the live page.")

    @field_validator("shift_starts")
    @classmethod
    def _times(cls, starts: list[str]) -> list[str]:
        bad = [s for s in starts if not _HHMM.match(s)]
        if bad:
            raise ValueError(f"shift starts {bad} are not HH:MM (24 h local time)")
        return sorted(set(starts))

    @model_validator(mode="after")
    def _tls_off_loopback(self) -> "UiConfig":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        if not is_loopback_host(self.address) and self.tls_cert is None:
            raise ValueError(f"address {self.address!r} is not loopback: passwords and session cookies "
                             "would cross the network in clear; set tls_cert and tls_key")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None
