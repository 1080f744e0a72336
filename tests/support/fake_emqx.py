"""A fake EMQX 5 REST API on loopback: the documented shapes (emqx/rest-api.md), API-key auth, switchable failures."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KEY, SECRET = "adapter-key", "9f3c1d0e6b8a4f2a9c7e"
BASIC = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()

NODES = [
    {"node": "emqx@10.0.0.1", "node_status": "running", "role": "core", "version": "5.8.9",
     "edition": "Opensource", "uptime": 153_901_000, "connections": 7, "live_connections": 5,
     "otp_release": "26.2.5-3/14.2.5", "memory_total": "7.63G", "memory_used": "1.21G"},
    {"node": "emqx@10.0.0.2", "node_status": "stopped", "role": "core"},
]
STATS = {"connections.count": 7, "live_connections.count": 5, "sessions.count": 7, "topics.count": 3}
METRICS = {"messages.sent": 23247, "messages.received": 66452, "packets.sent": 58174,
           "packets.received": 101347, "bytes.sent": 3315420, "bytes.received": 9280059}
PUBLISH_ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "t/sent": (200, {"id": "00061A4C2B1E5F3AF4420000030F0003"}),
    "t/none": (202, {"reason_code": 16, "message": "no_matching_subscribers"}),
    "t/retry": (503, {"reason_code": 131, "message": "failed_to_dispatch"}),
    "t/boom": (500, {"code": "INTERNAL_ERROR", "message": "boom"}),
}


def emqx_client(n: int, connected: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {
        "clientid": f"dev-{n}", "username": f"user-{n}", "node": "emqx@10.0.0.1", "connected": connected,
        "connected_at": "2024-01-01T12:34:56.789+08:00", "created_at": "2024-01-01T12:34:50.000+08:00",
        "ip_address": "10.1.2.3", "port": 50000 + n, "peerport": 50000 + n, "listener": "tcp:default",
        "proto_name": "MQTT", "proto_ver": 4, "clean_start": connected, "keepalive": 60,
        "expiry_interval": 0 if connected else 7200, "is_bridge": False, "mountpoint": None,
        "subscriptions_cnt": 1, "subscriptions_max": "infinity", "inflight_cnt": 0, "inflight_max": 32,
        "mqueue_len": 0 if connected else 2, "mqueue_max": 1000, "mqueue_dropped": 0, "awaiting_rel_cnt": 0,
        "awaiting_rel_max": 100, "send_msg": n, "heap_size": 376, "mailbox_len": 0, "reductions": 203,
    }
    if not connected:
        item["disconnected_at"] = "2024-01-01T13:00:00.000+08:00"
    return item


@dataclass
class FakeEmqx:
    """EMQX 5's REST subset; `status` forces every answer's HTTP status, `garbage` sends non-JSON."""

    clients: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    garbage: bool = False
    seen: list[Request] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        routes = [("/api/v5/nodes", self.nodes, "GET"), ("/api/v5/stats", self.stats, "GET"),
                  ("/api/v5/metrics", self.metrics, "GET"), ("/api/v5/clients", self.list_clients, "GET"),
                  ("/api/v5/clients/{clientid}", self.one_client, "GET"),
                  ("/api/v5/publish", self.publish, "POST"), ("/api/v5/publish/bulk", self.bulk, "POST")]
        return Starlette(routes=[Route(p, self._guarded(h), methods=[m]) for p, h, m in routes])

    def _guarded(self, handler: Any) -> Any:
        async def run(request: Request) -> Response:
            self.seen.append(request)
            if request.headers.get("authorization") != BASIC:
                return JSONResponse({"code": "BAD_API_KEY_OR_SECRET", "message": "Check api_key/api_secret"},
                                    status_code=401)
            if self.status is not None:
                return JSONResponse({"code": "INTERNAL_ERROR", "message": "forced"}, status_code=self.status)
            if self.garbage:
                return Response("<html>proxy error</html>", media_type="text/html")
            result: Response = await handler(request)
            return result
        return run

    async def nodes(self, request: Request) -> Response:
        return JSONResponse(NODES)

    async def stats(self, request: Request) -> Response:
        assert request.query_params.get("aggregate") == "true"
        return JSONResponse(STATS)

    async def metrics(self, request: Request) -> Response:
        assert request.query_params.get("aggregate") == "true"
        return JSONResponse(METRICS)

    async def list_clients(self, request: Request) -> Response:
        q = request.query_params
        page, limit = int(q.get("page", "1")), int(q.get("limit", "100"))
        rows = [c for c in self.clients
                if q.get("conn_state") in (None, "connected" if c["connected"] else "disconnected")
                and (not q.getlist("clientid") or c["clientid"] in q.getlist("clientid"))
                and (not q.getlist("username") or c["username"] in q.getlist("username"))
                and q.get("like_clientid", "") in c["clientid"]]
        start = (page - 1) * limit
        meta = {"page": page, "limit": limit, "hasnext": len(rows) > start + limit}
        if "like_clientid" not in q:  # EMQX does not count rows a fuzzy filter matched
            meta["count"] = len(rows)
        return JSONResponse({"data": rows[start:start + limit], "meta": meta})

    async def one_client(self, request: Request) -> Response:
        for c in self.clients:
            if c["clientid"] == request.path_params["clientid"]:
                return JSONResponse(c)
        return JSONResponse({"code": "CLIENTID_NOT_FOUND", "message": "Client ID not found"}, status_code=404)

    async def publish(self, request: Request) -> Response:
        body = await request.json()
        status, answer = self._answer(body)
        if status in (200, 202):
            self.published.append(body)
        return JSONResponse(answer, status_code=status)

    async def bulk(self, request: Request) -> Response:
        body = await request.json()
        answers = [self._answer(m) for m in body]
        if any(status == 400 for status, _ in answers):
            return JSONResponse({"reason_code": 144, "message": "topic_name_invalid"}, status_code=400)
        self.published += [m for m, (status, _) in zip(body, answers, strict=True) if status in (200, 202)]
        codes = {status for status, _ in answers}
        status = 200 if codes == {200} else 503 if 503 in codes else 202
        return JSONResponse([a for _, a in answers], status_code=status)

    @staticmethod
    def _answer(message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if "#" in message["topic"] or "+" in message["topic"]:
            return 400, {"reason_code": 144, "message": "topic_name_invalid"}
        return PUBLISH_ANSWERS.get(message["topic"], PUBLISH_ANSWERS["t/none"])


    def reset(self) -> None:
        self.clients = [emqx_client(n) for n in range(1, 6)] + [emqx_client(n, False) for n in (6, 7)]
        self.status, self.garbage = None, False
        self.seen.clear()
        self.published.clear()
