"""The Open Inference Protocol's gRPC messages: the .proto and the module protoc makes of it."""
