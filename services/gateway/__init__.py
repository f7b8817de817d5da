"""HTTP gateway: translates HTTP, SSE and WebSocket to the gRPC mesh."""
