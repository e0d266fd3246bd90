"""Support for the eBPF and symbolizer tests: the tiny Go target program and
a driver that runs collectors in-process under the system python3 (bcc)."""
