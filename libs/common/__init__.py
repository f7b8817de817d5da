"""Settings, logging, errors, identity and gRPC plumbing shared by every service."""
