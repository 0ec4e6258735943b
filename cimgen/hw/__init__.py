"""Hardware views of the accelerator beyond the RTL simulators (SystemC/TLM-2.0)."""
