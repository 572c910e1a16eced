"""The `edge` sub-commands: each module here exposes one click command or group named `command`."""
