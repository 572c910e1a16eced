"""What a user can fix on the camera side: a wrong serial, a missing producer file."""


class CameraError(Exception):
    """A camera, gate or station problem with a message naming the device and the fix."""
