"""Entry point of ``python -m tend_client.mcp``: the MCP server on stdio."""

from tend_client.mcp import main

main()
