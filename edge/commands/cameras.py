"""`edge cameras list` and `edge cameras snap`: what is connected, and one picture from each camera."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import cv2

from camera.base import build_camera
from camera.errors import CameraError
from edge.config import load_config
from edge.commands import config_option

log = logging.getLogger(__name__)



@click.group("cameras")
def command() -> None:
    """List connected cameras and take test pictures."""


@command.command("list")
@config_option("The line's config file.")
def list_cameras(config_path: Path) -> None:
    """Connected devices with model and serial: every pylon camera (PYLON_CAMEMU=n adds emulated
    ones) and the devices of each GenTL producer (.cti) named in the config."""
    from camera.drivers import genicam, pylon

    config = load_config(config_path) if config_path.exists() else None
    wanted = {}
    if config is not None:
        for cam in config.cameras:
            key = getattr(cam, "serial", None) or getattr(cam, "user_name", None)
            if key:
                wanted[(cam.driver, key)] = cam.id
    devices = pylon.list_devices()
    producers = sorted({cam.cti for cam in config.cameras if cam.driver == "genicam"}) if config else []
    for cti in producers:
        devices += genicam.list_devices(cti)
    for dev in devices:
        used = wanted.get((dev["driver"], dev["serial"])) or wanted.get((dev["driver"], dev.get("user_name")))
        name = f"  user name {dev['user_name']}" if dev.get("user_name") else ""
        click.echo(f"{dev['driver']:8} {dev['model']:24} serial {dev['serial']}{name}"
                   f"{'  -> ' + used if used else ''}")
    if not devices:
        click.echo("no cameras found (pylon: none; set PYLON_CAMEMU=6 for emulated ones"
                   f"{'; GenTL producers: ' + ', '.join(map(str, producers)) if producers else ''})")
    if config is not None:
        found = {(d["driver"], d["serial"]) for d in devices} | {(d["driver"], d.get("user_name")) for d in devices}
        for (driver, key), cam_id in wanted.items():
            if (driver, key) not in found:
                click.echo(f"missing: camera {cam_id} ({driver} {key}) is configured but not connected")


@command.command("snap")
@config_option("The line's config file.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the PNG files [default: <data_dir>/snaps].")
@click.option("--timeout-ms", default=3000, show_default=True, help="Wait this long for each picture.")
def snap(config_path: Path, out_dir: Path | None, timeout_ms: int) -> None:
    """One picture from each configured camera, saved as <out>/<camera id>_v<view>.png."""
    config = load_config(config_path)
    out_dir = out_dir or config.data_dir / "snaps"
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for cfg in config.cameras:
        camera = build_camera(cfg)
        try:
            camera.start()
            camera.trigger(1)
            capture = camera.grab(timeout_ms / 1e3)
            if capture is None:
                raise CameraError(f"camera {cfg.id!r}: no picture within {timeout_ms} ms")
        except Exception as exc:  # one broken camera must not hide the pictures of the others
            failed.append(cfg.id)
            click.echo(f"{cfg.id}: FAILED: {exc}", err=True)
            continue
        finally:
            camera.close()
        path = out_dir / f"{cfg.id}_v{cfg.view}.png"
        cv2.imwrite(str(path), capture.pixels)
        height, width = capture.pixels.shape[:2]
        click.echo(f"{cfg.id}: view {cfg.view}, {width}x{height} {capture.pixel_format} -> {path}")
    if failed:
        raise CameraError(f"no picture from {', '.join(failed)}")
