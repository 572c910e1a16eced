"""The glass renderer as a camera: each trigger renders this camera's view of the container.

Deterministic in (seed, container seq, view), so six synthetic cameras with one seed
show the same container from six sides, and a rerun shows the same line. With
`bad_mould`, the containers of that mould (line.machine's round-robin, the simulated
gate's) are rendered with the bad mould's lower defect-free share: a demo of a cavity
whose reject rate climbs.
"""

from __future__ import annotations

from camera.base import Capture, monotonic_ns
from camera.drivers.convert import to_format
from camera.drivers.playback import PlaybackCamera
from storage.moulds import delivered


class SyntheticCamera(PlaybackCamera):
    driver = "synthetic"

    def __init__(self, config) -> None:
        super().__init__(config)
        self._renderer = None

    def open(self) -> None:
        from camera.synth import GlassRenderer

        self._renderer = GlassRenderer(width=self.config.width, height=self.config.height,
                                       defect_free_share=self.config.defect_free_share)
        bad = self.config.bad_mould
        self._bad_renderer = None if bad is None else GlassRenderer(
            width=self.config.width, height=self.config.height, defect_free_share=bad.defect_free_share)

    def configure(self) -> None:
        """Nothing to set: size and share were given to the renderer."""

    def _capture(self, seq: int) -> Capture:
        renderer = self._bad_renderer if self._from_bad_mould(seq) else self._renderer
        container = renderer.container(self.config.seed, seq)
        view = renderer.render(container, self.config.view)
        pixels, fmt = to_format(view.image, self.config.pixel_format)
        return Capture(pixels=pixels, pixel_format=fmt, t_capture_ns=monotonic_ns(),
                       meta={"seed": self.config.seed, "rendered_seq": seq})

    def _from_bad_mould(self, seq: int) -> bool:
        machine, bad = self.config.machine, self.config.bad_mould
        if bad is None or machine is None:
            return False
        return str(delivered(seq, machine.sections, machine.cavities)) == bad.mould

    def describe(self) -> dict:
        return {"id": self.id, "driver": self.driver, "model": "GlassRenderer",
                "serial": f"seed-{self.config.seed}"}
