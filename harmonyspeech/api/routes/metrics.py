"""``GET /metrics``: Prometheus text exposition of this process's metrics.

In-process (tests, ``LocalEngine``) that is every ``harmonyspeech_*`` metric. Inside Ray Serve
the metrics go through Ray's metrics agent instead (scrape each node's metrics export port), and
this endpoint serves only the ingress process's own collectors, after a note saying so.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from harmonyspeech import telemetry

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(telemetry.exposition(), media_type=CONTENT_TYPE_LATEST)
