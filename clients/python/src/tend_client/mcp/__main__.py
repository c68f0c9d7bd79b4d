"""Entry point of ``python -m tend_client.mcp``: the MCP server on stdio."""

from tend_client.mcp_server import main

main()
