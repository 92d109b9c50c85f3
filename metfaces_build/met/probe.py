"""Is an API root there at all? One TCP connection, before a run commits to its retries.

The fetch stage rides out outages (it retries for up to --max-outage), which is right
for a server that hiccups but wrong for one that is simply gone: the demo's emulator
after the demo ended, a typo in --api. A refused connection or an unknown host is
reported at once instead.
"""
from __future__ import annotations

import socket
from typing import Optional
from urllib.parse import urlsplit


def unreachable(api_root: str, timeout: float = 5.0) -> Optional[str]:
    """Why `api_root` cannot be reached ("connection refused", "unknown host ..."), or
    None when a TCP connection to it opens (or the URL is not one to probe)."""
    try:
        parts = urlsplit(api_root)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if not host:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port}"
    except socket.gaierror as e:
        return f"unknown host {host} ({e.strerror})"
    except socket.timeout:
        return None  # slow, not gone: the client's retries handle it
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e.strerror or e})"
