"""Lab networks on one machine: namespaces, bridges, veths, taps (see LAB.md)."""
