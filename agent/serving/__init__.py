"""Local inference on the device: KServe's Open Inference Protocol over HTTP and gRPC.

slots.py          the version that answers requests, swapped atomically
oip.py            the protocol's core, shared by both transports
codec.py          request bodies to tensors, bounded before decoding
batching.py       dynamic batching of concurrent requests
inference_api.py  the HTTP API's routes
http_server.py    the HTTP server (TCP and Unix socket)
grpc_server.py    the gRPC server
front_ends.py     the front ends [serving] asks for, started and stopped together
"""
