"""The photoelectric gate: one module per `driver:` key (simulated, serial_modem, serial_lines)."""
