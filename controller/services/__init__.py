"""Domain services: the controller's behaviour, free of gRPC and protobuf."""
