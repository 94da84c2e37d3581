"""The controller's gRPC transport: thin servicers, auth and error-mapping interceptor, server."""
