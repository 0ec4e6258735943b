"""cimgen golden model: integer IR, reference inference, crossbar physics, machine."""
