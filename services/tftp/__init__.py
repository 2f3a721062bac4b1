"""Read-only TFTP: pure codec (packet), pure transfer engine (engine), sockets (server)."""
