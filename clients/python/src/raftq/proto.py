"""The generated protobuf modules of the raftq API, under a public name."""

from raftq._proto.raftq.v1 import admin_pb2, queue_pb2

__all__ = ["admin_pb2", "queue_pb2"]
