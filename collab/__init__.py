"""The collaboration server: protocol core, rooms, HTTP/WebSocket app, config and CLI."""
