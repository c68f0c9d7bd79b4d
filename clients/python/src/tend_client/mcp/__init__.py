"""``python -m tend_client.mcp`` runs the MCP server; the code is in :mod:`tend_client.mcp_server`.

Importing this package needs nothing beyond tend_client: :func:`main` checks for the MCP SDK
(the top-level ``mcp`` package, an optional dependency) and, without it, says how to install
it in one line on stderr and exits 1.
"""

from __future__ import annotations

import sys

MISSING_MCP = (
    "tend_client.mcp: the MCP server needs the mcp package, which is not installed: "
    "pip install 'tend-client[mcp]' (from the repository: pip install './clients/python[mcp]')"
)


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(1)


def main() -> None:
    """Serve MCP on stdio; without the mcp package, one line on stderr and exit status 1."""
    try:
        import mcp  # noqa: F401  (absolute: the MCP SDK, not this package)
    except ImportError:
        _fail(MISSING_MCP)
    try:
        from tend_client.mcp_server import main as serve
    except ImportError as e:
        # mcp is there but lacks what the server uses (too old, or broken).
        if (e.name or "").split(".")[0] != "mcp":
            raise
        _fail(
            f"tend_client.mcp: the installed mcp package does not work with this server ({e}): "
            "pip install -U 'tend-client[mcp]' (from the repository: pip install -U './clients/python[mcp]')"
        )
    serve()
