"""Talking to a running Dagster webserver from tests: its GraphQL API on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.request

from pipelines.screenshots import free_port

__all__ = ["free_port", "graphql"]


def graphql(port: int, query: str, variables: dict | None = None, timeout_s: float = 60) -> dict:
    """The `data` of one GraphQL request; a response with `errors` fails the test."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        out = json.load(resp)
    assert "errors" not in out, out
    return out["data"]
