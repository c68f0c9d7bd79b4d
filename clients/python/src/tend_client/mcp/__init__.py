"""``python -m tend_client.mcp`` runs the MCP server; the code is in :mod:`tend_client.mcp_server`."""
