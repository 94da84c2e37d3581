"""Generated protobuf and gRPC code for the edgefleet.v1 contracts (do not edit)."""
