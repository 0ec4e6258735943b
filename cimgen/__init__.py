"""cimgen: compile BNN/TNN models onto RRAM compute-in-memory crossbars."""

__version__ = "0.1.0"
