"""Local inference on the device: KServe's Open Inference Protocol over HTTP and gRPC.

slots.py          the version that answers requests, swapped atomically
oip.py            the protocol's core, shared by both transports: metadata, infer documents
oip_tensors.py    the protocol's datatypes, and input tensors judged before they are made
codec.py          request bodies to tensors, bounded before decoding
batching.py       dynamic batching of concurrent requests
request_runs.py   where a request's run happens: batch, event loop or thread (both transports)
inference_api.py  the HTTP API's routes
http_messages.py  the HTTP API's headers, request bodies and responses
http_server.py    the HTTP server (TCP and Unix socket)
grpc_server.py    the gRPC server
grpc_service.py   the gRPC service's handlers
grpc_messages.py  the gRPC messages to and from arrays
front_ends.py     the front ends [serving] asks for, started and stopped together
"""
