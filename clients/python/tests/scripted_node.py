"""A gRPC Queue server on 127.0.0.1 whose replies a test scripts.

It replaces a raftq node only where a test needs a reply the real
cluster cannot be made to give on demand (an UNAVAILABLE with a leader hint,
a status on the n-th call). Every request it receives is kept in `requests`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from raftq._proto.raftq.v1 import queue_pb2, queue_pb2_grpc

Reply = Callable[[Any, grpc.aio.ServicerContext], Any]


@dataclass
class ScriptedNode(queue_pb2_grpc.QueueServicer):
    replies: list[Reply] = field(default_factory=list)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    endpoint: str = ""
    server: grpc.aio.Server | None = None

    async def _answer(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.requests.append((method, request))
        if not self.replies:
            await context.abort(grpc.StatusCode.INTERNAL, f"no scripted reply left for {method}")
        return await self.replies.pop(0)(request, context)

    async def Enqueue(self, request, context):  # noqa: N802 - gRPC method name
        return await self._answer("Enqueue", request, context)

    async def ReadMessage(self, request, context):  # noqa: N802 - gRPC method name
        return await self._answer("ReadMessage", request, context)

    async def WaitForWakeup(self, request, context):  # noqa: N802 - gRPC method name
        return await self._answer("WaitForWakeup", request, context)


async def start_scripted_node() -> ScriptedNode:
    node = ScriptedNode()
    server = grpc.aio.server()
    queue_pb2_grpc.add_QueueServicer_to_server(node, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    node.server = server
    node.endpoint = f"127.0.0.1:{port}"
    return node


def unavailable(leader: str | None = None) -> Reply:
    async def reply(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if leader is not None:
            context.set_trailing_metadata((("x-raftq-leader", leader),))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "not the leader")

    return reply


def status(code: grpc.StatusCode, details: str) -> Reply:
    async def reply(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, details)

    return reply


def enqueued(duplicate: bool = False) -> Reply:
    async def reply(request: queue_pb2.EnqueueRequest, context: grpc.aio.ServicerContext) -> Any:
        message = queue_pb2.CleanupMessage(
            message_id=request.message_id,
            idempotency_key=request.idempotency_key,
            work_pool_id=request.work_pool_id,
            kind=request.kind,
            target=request.target,
            data=request.data if request.HasField("data") else "{}",
        )
        message.created_at.GetCurrentTime()
        message.updated_at.CopyFrom(message.created_at)
        return queue_pb2.EnqueueResponse(message=message, duplicate=duplicate)

    return reply
